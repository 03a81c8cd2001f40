"""Databases on a server the user names (``TCMERGE_DB_URL``): an administrator URL.

The provider creates its databases on that server and drops exactly those when
closed; it never stops the server.
"""

from __future__ import annotations

import contextlib
from typing import Any

from psycopg import sql
from sqlalchemy.engine import URL

from tcmerge.config import Settings
from tcmerge.dburl import DatabaseRef, parse_database
from tcmerge.errors import ProviderUnavailable
from tcmerge.providers._pgadmin import PostgresAdminMixin
from tcmerge.providers.base import Provider


class UrlPostgresServer(PostgresAdminMixin):
    def __init__(self, name: str, admin: DatabaseRef) -> None:
        super().__init__(name)
        self._admin = admin.url
        self.maintenance_database = admin.url.database or "postgres"
        self._created: list[str] = []
        self._roles: list[str] = []

    def url(self, database: str, *, user: str | None = None, password: str | None = None,
            host: str | None = None) -> URL:
        url = self._admin.set(database=database)
        if user is not None:
            # _replace: URL.set(password=None) would keep the administrator's password
            url = url._replace(username=user, password=password)
        return url.set(host=host) if host else url

    def create_database(self, name: str, *, owner: str | None = None,
                        encoding: str = "UTF8") -> DatabaseRef:
        ref = super().create_database(name, owner=owner, encoding=encoding)
        self._created.append(name)
        return ref

    def create_role(self, name: str, password: str | None, *, superuser: bool = False,
                    createdb: bool = False) -> None:
        super().create_role(name, password, superuser=superuser, createdb=createdb)
        self._roles.append(name)

    def close(self) -> None:
        """Drop exactly the databases and roles this provider made; the server stays."""
        while self._created:
            with contextlib.suppress(Exception):
                self.drop_database(self._created.pop())
        while self._roles:
            name = self._roles.pop()
            with contextlib.suppress(Exception), self.admin_connection() as conn:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


class UrlProvider(Provider):
    name = "url"

    def __init__(self, url: str | None = None) -> None:
        super().__init__()
        text = url or Settings.from_env().provider_url
        if not text:
            raise ProviderUnavailable(f"{self.name}: {self.unavailable_reason()}")
        self._admin = parse_database(text)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if Settings.from_env().provider_url:
            return None
        return "no server named: set TCMERGE_DB_URL to an administrator URL"

    def _start_server(self, name: str, **options: Any) -> UrlPostgresServer:
        return UrlPostgresServer(name, self._admin)
