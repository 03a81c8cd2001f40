"""Naming databases: URLs, their dialect, and keeping passwords out of every text.

A database argument is a SQLAlchemy URL; the dialect comes from its scheme. The
password, when there is one, lives only inside the ``sqlalchemy.URL`` object and
is masked whenever the URL is shown.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from tcmerge.errors import ConfigError, MixedDatabaseTypesError, UnsupportedDatabaseError

#: Default driver per dialect: the driver tcmerge is built and tested with.
DEFAULT_DRIVERS = {"postgresql": "psycopg", "oracle": "oracledb"}
#: Dialects tcmerge can merge.
MERGEABLE = ("postgresql", "oracle")
#: Dialects refused for merging, with the reason shown to the user.
REFUSED_FOR_MERGE = {
    "mssql": (
        "Microsoft SQL Server is not supported for merging Text Conference databases "
        "(Cisco's merge tool supports only Oracle and PostgreSQL). MS SQL remains usable "
        "as the external database of an HA group; merge on PostgreSQL or Oracle."
    ),
}

MASK = "***"


@dataclass(frozen=True)
class DatabaseRef:
    """One database the user named: its URL (password inside) and a label for output."""

    url: URL
    name: str | None = None  # the topology name, when it came from a topology
    extra_secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    @property
    def label(self) -> str:
        """What output shows: the topology name or the URL with its password masked."""
        return self.name or mask_url(self.url)

    @property
    def secrets(self) -> tuple[str, ...]:
        found = [self.url.password, *(_query_values(self.url, key) for key in SECRET_QUERY_KEYS)]
        return (*(str(s) for s in found if s), *self.extra_secrets)

    def __str__(self) -> str:
        return self.label

    def with_password(self, password: str | None) -> DatabaseRef:
        # URL.set(password=None) would keep the old password: replace the field itself
        return DatabaseRef(self.url._replace(password=password), self.name, self.extra_secrets)


#: Query parameters that carry secrets (libpq reads a password from the query too).
SECRET_QUERY_KEYS = ("password", "sslpassword")


def _query_values(url: URL, key: str) -> str | None:
    value = url.query.get(key)
    if value is None:
        return None
    return value if isinstance(value, str) else ",".join(value)


def mask_url(url: URL | str) -> str:
    """The URL as text with its password (also one given in the query) replaced by ``***``."""
    if isinstance(url, str):
        url = make_url(url)
    hidden = {key: MASK for key in SECRET_QUERY_KEYS if key in url.query}
    if hidden:
        url = url.update_query_dict(hidden)
    return url.render_as_string(hide_password=True)


def without_password(url: URL) -> URL:
    """The URL with no password at all (``URL.set(password=None)`` keeps the old one)."""
    url = url._replace(password=None)
    present = [key for key in SECRET_QUERY_KEYS if key in url.query]
    return url.difference_update_query(present) if present else url


def public_url(ref: DatabaseRef) -> str:
    """The URL without its password, as job records keep it."""
    return without_password(ref.url).render_as_string(hide_password=False)


def same_place(a: URL, b: URL) -> bool:
    """Whether two URLs name the same database as far as their text tells (password and
    driver aside): the target named among the sources, without connecting."""
    def bare(url: URL) -> URL:
        return without_password(url).set(drivername=url.get_backend_name())

    return bare(a) == bare(b)


def libpq_uri(ref: DatabaseRef) -> str:
    """``postgresql://user@host:port/db``, without the password: what psql and libpq
    take (``postgresql+psycopg://`` is SQLAlchemy's form, which psql refuses)."""
    return without_password(ref.url).set(drivername="postgresql").render_as_string(
        hide_password=False)


def mask_text(text: str) -> str:
    """User text that failed to parse as a URL, as it may be shown: what could be a
    password (after the user name's ':' and before the last '@', or a ``password=``
    query value) masked."""
    head, at, rest = text.rpartition("@")
    if at:
        scheme, marker, userinfo = head.rpartition("://")
        if ":" in userinfo:
            text = f"{scheme}{marker}{userinfo.split(':', 1)[0]}:{MASK}@{rest}"
    return re.sub(r"((?:password|pwd)=)[^&;\s]*", rf"\g<1>{MASK}", text, flags=re.IGNORECASE)


def parse_database(text: str, *, name: str | None = None) -> DatabaseRef:
    """Parse a database URL given by the user; normalise the driver.

    ``postgresql://`` (also ``postgres://`` and ``postgresql+psycopg2://``, any driver)
    becomes ``postgresql+psycopg://``, and ``oracle://`` ``oracle+oracledb://``.
    Raises ConfigError (never echoing the password).
    """
    if "://" not in text:
        raise ConfigError(
            f"{mask_text(text)!r} is not a database URL; give a SQLAlchemy URL such as "
            "postgresql+psycopg://user@host:5432/dbname, or a database name together "
            "with --topology FILE"
        )
    try:
        url = make_url(text)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ConfigError(f"could not parse the database URL {mask_text(text)!r} (check its "
                          "syntax and port)") from None
    backend = url.get_backend_name()
    if backend == "postgres":  # libpq's and psql's synonym, gone from SQLAlchemy
        backend = "postgresql"
        url = url.set(drivername="postgresql")
    if backend not in (*MERGEABLE, *REFUSED_FOR_MERGE):
        raise UnsupportedDatabaseError(
            f"{mask_text(text)!r}: database type {backend!r} is not supported; tcmerge "
            "reads postgresql:// and oracle:// URLs (and mssql:// in a topology)")
    if url.port is not None and not 0 < url.port < 65536:
        raise ConfigError(f"the database URL {mask_text(text)!r} has port {url.port}; a TCP "
                          "port is 1 to 65535")
    driver = DEFAULT_DRIVERS.get(backend)
    if driver is not None:
        # tcmerge talks to the server through this driver only (its COPY relay and
        # sessions are psycopg's): another one named in the URL (psycopg2, pg8000,
        # cx_oracle) means the same server and is not installed
        url = url.set(drivername=f"{backend}+{driver}")
    query_password = _query_values(url, "password")
    if query_password is not None:
        # one home for the password, so that masking and job records see it
        url = url.difference_update_query(["password"])
        if url.password is None:
            url = url._replace(password=query_password)
    return DatabaseRef(url=url, name=name)


def require_mergeable(refs: Sequence[DatabaseRef]) -> str:
    """Refuse unsupported or mixed dialects before any connection; return the dialect."""
    for ref in refs:
        if ref.dialect in REFUSED_FOR_MERGE:
            raise UnsupportedDatabaseError(f"{ref.label}: {REFUSED_FOR_MERGE[ref.dialect]}")
        if ref.dialect not in MERGEABLE:
            raise UnsupportedDatabaseError(
                f"{ref.label}: database type {ref.dialect!r} is not supported; "
                f"tcmerge merges {' and '.join(MERGEABLE)} databases"
            )
    dialects = sorted({ref.dialect for ref in refs})
    if len(dialects) > 1:
        raise MixedDatabaseTypesError(
            "all inputs must be of one database type to be merged, got "
            + ", ".join(f"{ref.label} ({ref.dialect})" for ref in refs)
        )
    return dialects[0]


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Remove every known secret from a text (error messages from drivers and servers).

    A secret is masked where it stands as a whole token (and in its URL-quoted form),
    so that a short password does not blank out parts of ordinary words.
    """
    forms = {form for s in secrets if s for form in (s, quote(s, safe=""), quote_plus(s))}
    for secret in sorted(forms, key=len, reverse=True):
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", MASK, text)
    return text
