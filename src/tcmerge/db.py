"""Engines and connections, with driver errors turned into tcmerge errors without secrets."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from tcmerge.dburl import DatabaseRef, scrub
from tcmerge.errors import DatabaseError

log = logging.getLogger(__name__)

#: Name tcmerge's sessions carry ("tcmerge" or "tcmerge-<role>"), so that the session
#: check can tell them from others; a concurrent merge is caught by its lock instead.
APPLICATION_NAME = "tcmerge"
#: The PostgreSQL advisory lock a merge holds on its target for its whole transaction.
MERGE_LOCK_KEY = 0x74636D65726765  # "tcmerge"
#: The HA model's room service stands for IM&P's TC service: its sessions DO count.
ROOM_SERVICE_APPLICATION = "tc-room-service"


def libpq_params(target: DatabaseRef | URL) -> dict[str, Any]:
    """libpq keyword parameters for a PostgreSQL URL: host, port, user, password, dbname
    and the URL's query options (``?host=/socket/dir``, ``sslmode``...).

    For psycopg.connect in this process only: the password stays in memory.
    """
    url = target.url if isinstance(target, DatabaseRef) else target
    params: dict[str, Any] = {
        "host": url.host, "port": url.port, "user": url.username,
        "password": url.password, "dbname": url.database,
    }
    for key, value in url.query.items():
        params[key] = value if isinstance(value, str) else value[-1]
    return {k: v for k, v in params.items() if v is not None}


def create_engine(ref: DatabaseRef, *, application_name: str = APPLICATION_NAME,
                  **kwargs: Any) -> sa.Engine:
    """An engine for one database; the password stays inside the process. The dialect's
    adapter adds its driver arguments (PostgreSQL: UTF8, the application name)."""
    from tcmerge.dialects import known_adapter

    kwargs.setdefault("pool_pre_ping", False)
    adapter = known_adapter(ref.dialect)
    if adapter is not None:
        kwargs["connect_args"] = {**adapter.engine_connect_args(application_name),
                                  **kwargs.pop("connect_args", {})}
    return sa.create_engine(ref.url, **kwargs)


def server_reason(exc: BaseException, ref: DatabaseRef) -> str:
    """The server's or driver's own words for a failure, with every secret removed."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    reason = " ".join(line.strip() for line in text if line.strip()) or type(orig).__name__
    return scrub(reason, ref.secrets)


def session(ref: DatabaseRef, role: str, **engine_kwargs: Any
            ) -> AbstractContextManager[sa.Connection]:
    """One session of tcmerge's on ``ref``, named ``tcmerge-<role>``: no pool, statement
    parameters kept out of error texts, CONNECTION_FAILED when it cannot connect."""
    return connect(ref, poolclass=sa.pool.NullPool, hide_parameters=True,
                   application_name=f"{APPLICATION_NAME}-{role}", **engine_kwargs)


@contextmanager
def connect(ref: DatabaseRef, **engine_kwargs: Any) -> Iterator[sa.Connection]:
    """A connection to ``ref``; a failure to connect raises DatabaseError(CONNECTION_FAILED)."""
    engine = create_engine(ref, **engine_kwargs)
    log.info("connecting to %s", ref.label)
    try:
        try:
            conn = engine.connect()
        except sa.exc.DBAPIError as exc:
            raise DatabaseError(
                f"cannot connect to {ref.label}: {server_reason(exc, ref)}",
                code="CONNECTION_FAILED",
            ) from None
        with conn:
            yield conn
    finally:
        engine.dispose()
