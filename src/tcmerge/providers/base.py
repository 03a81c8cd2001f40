"""What every database provider offers: servers that hand out database URLs.

A *provider* (embedded, system, testcontainers, url) starts *servers*; a server
creates databases and roles and gives ``DatabaseRef`` objects for them. Servers
that the provider started are removed by ``close()``: no process, no directory
left behind. PostgreSQL-only powers (pg_hba.conf editing) are declared as
capability flags, not guessed from the class.
"""

from __future__ import annotations

import abc
import secrets
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from tcmerge.dburl import DatabaseRef


def new_password() -> str:
    return secrets.token_urlsafe(18)


class DatabaseServer(abc.ABC):
    """A running database server that tcmerge may administer (tests, demo)."""

    dialect: str = "postgresql"
    #: pg_hba.conf can be rewritten and reloaded.
    supports_hba: bool = False
    #: the server can be stopped and started again (failure tests).
    supports_restart: bool = False

    def __init__(self, name: str) -> None:
        self.name = name

    # -- what every server does -------------------------------------------------------
    @property
    @abc.abstractmethod
    def version(self) -> str:
        """The server version as the server reports it, e.g. ``18.6``."""

    @abc.abstractmethod
    def url(self, database: str, *, user: str | None = None,
            password: str | None = None, host: str | None = None) -> URL:
        """A URL for ``database``; the administrator's credentials unless ``user`` is given."""

    def ref(self, database: str, *, user: str | None = None, password: str | None = None,
            name: str | None = None) -> DatabaseRef:
        return DatabaseRef(self.url(database, user=user, password=password), name=name)

    def admin_ref(self, database: str | None = None) -> DatabaseRef:
        return DatabaseRef(self.url(database or self.maintenance_database))

    maintenance_database: str = "postgres"

    def execute(self, statements: str | Sequence[str], *, database: str | None = None,
                params: dict[str, Any] | None = None) -> None:
        """Run statements as the administrator, each in autocommit mode."""
        engine = sa.create_engine(self.url(database or self.maintenance_database),
                                  isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                for statement in [statements] if isinstance(statements, str) else statements:
                    conn.execute(sa.text(statement), params or {})
        finally:
            engine.dispose()

    @abc.abstractmethod
    def create_database(self, name: str, *, owner: str | None = None,
                        encoding: str = "UTF8") -> DatabaseRef:
        """Create an empty database and return a reference (administrator credentials)."""

    @abc.abstractmethod
    def drop_database(self, name: str) -> None:
        """Drop a database, ending its sessions first."""

    @abc.abstractmethod
    def create_role(self, name: str, password: str | None, *, superuser: bool = False,
                    createdb: bool = False) -> None:
        """Create a login role."""

    # -- optional powers (see the capability flags) -------------------------------------
    def set_hba(self, lines: Sequence[str]) -> None:
        """Replace pg_hba.conf with ``lines`` and reload."""
        raise NotImplementedError(f"{type(self).__name__} cannot edit pg_hba.conf")

    def stop(self) -> None:
        """Stop the server process, keeping its data (see ``start``)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be stopped and restarted")

    def start(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be stopped and restarted")

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the server and remove everything it left (idempotent)."""


class Provider(abc.ABC):
    """Starts database servers of one kind; ``close()`` removes every one of them."""

    name: str = ""
    dialect: str = "postgresql"
    #: its servers are processes on this machine that can outlive tcmerge (demo --keep)
    can_detach: bool = False

    def __init__(self) -> None:
        self._servers: list[DatabaseServer] = []

    @classmethod
    @abc.abstractmethod
    def unavailable_reason(cls) -> str | None:
        """None when the provider can run here, else the reason it cannot."""

    @abc.abstractmethod
    def _start_server(self, name: str, **options: Any) -> DatabaseServer: ...

    def start_server(self, name: str = "pg", **options: Any) -> DatabaseServer:
        server = self._start_server(name, **options)
        self._servers.append(server)
        return server

    def close(self) -> None:
        errors: list[BaseException] = []
        while self._servers:
            server = self._servers.pop()
            try:
                server.close()
            except Exception as exc:  # keep closing the others
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
