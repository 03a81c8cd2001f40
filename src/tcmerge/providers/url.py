"""Databases on a server the user names (``TCMERGE_DB_URL``): an administrator URL.

The provider creates its databases on that server and drops exactly those when
closed; it never stops the server.
"""

from __future__ import annotations

import contextlib
from typing import Any

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

    def url(self, database: str, *, user: str | None = None, password: str | None = None,
            host: str | None = None) -> URL:
        url = self._admin.set(database=database)
        if user is not None:
            url = url.set(username=user, password=password)
        return url.set(host=host) if host else url

    def create_database(self, name: str, *, owner: str | None = None,
                        encoding: str = "UTF8") -> DatabaseRef:
        ref = super().create_database(name, owner=owner, encoding=encoding)
        self._created.append(name)
        return ref

    def close(self) -> None:
        while self._created:
            with contextlib.suppress(Exception):
                self.drop_database(self._created.pop())


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
