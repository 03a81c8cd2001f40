"""Administrator statements shared by every PostgreSQL server kind (identifiers quoted)."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import sql

from tcmerge.db import libpq_params
from tcmerge.dburl import DatabaseRef
from tcmerge.errors import ConfigError
from tcmerge.providers.base import DatabaseServer

_ENCODING = re.compile(r"^[A-Za-z0-9_]+$")


class PostgresAdminMixin(DatabaseServer):
    """create/drop database and role through psycopg in autocommit mode."""

    def admin_connection(self, database: str | None = None) -> psycopg.Connection[Any]:
        url = self.url(database or self.maintenance_database)
        return psycopg.connect(**libpq_params(url), autocommit=True)

    @property
    def version(self) -> str:
        with self.admin_connection() as conn:
            row = conn.execute("SHOW server_version").fetchone()
        assert row is not None
        return str(row[0]).split()[0]

    def create_database(self, name: str, *, owner: str | None = None,
                        encoding: str = "UTF8") -> DatabaseRef:
        if not _ENCODING.match(encoding):
            raise ValueError(f"bad encoding name {encoding!r}")
        statement = sql.SQL(
            "CREATE DATABASE {} ENCODING {} TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"
        ).format(sql.Identifier(name), sql.Literal(encoding))
        if owner:
            statement = statement + sql.SQL(" OWNER {}").format(sql.Identifier(owner))
        with self.admin_connection() as conn:
            try:
                conn.execute(statement)
            except psycopg.errors.DuplicateDatabase:
                # a server the user named (url provider) may hold one of that name: it is
                # theirs, never dropped; say so instead of failing as an internal error
                raise ConfigError(
                    f"database {name!r} already exists on the server "
                    f"{self.admin_ref().label}; tcmerge creates its own databases there "
                    "and drops only those: drop or rename it, or name another server"
                ) from None
        return self.admin_ref(name)

    def drop_database(self, name: str) -> None:
        with self.admin_connection() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))

    def create_role(self, name: str, password: str | None, *, superuser: bool = False,
                    createdb: bool = False) -> None:
        options: list[sql.Composable] = [sql.SQL("LOGIN")]
        if superuser:
            options.append(sql.SQL("SUPERUSER"))
        if createdb:
            options.append(sql.SQL("CREATEDB"))
        with self.admin_connection() as conn:
            if password is not None:
                # a SCRAM verifier made here: the clear password never reaches SQL text
                verifier = conn.pgconn.encrypt_password(
                    password.encode(), name.encode(), b"scram-sha-256").decode()
                options.append(sql.SQL("PASSWORD {}").format(sql.Literal(verifier)))
            conn.execute(sql.SQL("CREATE ROLE {} ").format(sql.Identifier(name))
                         + sql.SQL(" ").join(options))
