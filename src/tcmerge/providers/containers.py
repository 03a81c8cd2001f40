"""PostgreSQL and Oracle Free in containers through Testcontainers (needs a Docker engine)."""

from __future__ import annotations

import contextlib
import secrets
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from tcmerge.dburl import DatabaseRef
from tcmerge.errors import ProviderUnavailable
from tcmerge.providers._pgadmin import PostgresAdminMixin
from tcmerge.providers.base import DatabaseServer, Provider, new_password

POSTGRES_IMAGE = "postgres:16-alpine"
ORACLE_IMAGE = "gvenzl/oracle-free:slim-faststart"


def docker_unavailable_reason() -> str | None:
    try:
        import docker
        import testcontainers  # noqa: F401
    except ImportError:
        return "testcontainers is not installed (pip install 'tcmerge[containers]')"
    try:
        client = docker.from_env()
        client.ping()
        client.close()
    except Exception as exc:
        return f"no Docker engine answers ({type(exc).__name__}: {str(exc)[:160]})"
    return None


class ContainerPostgresServer(PostgresAdminMixin):
    def __init__(self, name: str, image: str = POSTGRES_IMAGE) -> None:
        super().__init__(name)
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:
            from testcontainers.postgres import PostgresContainer
        self.password = new_password()
        self._container = PostgresContainer(image, username="postgres", password=self.password,
                                            dbname="postgres", driver="psycopg")
        self._container.start()
        self.host = self._container.get_container_host_ip()
        self.port = int(self._container.get_exposed_port(5432))

    def url(self, database: str, *, user: str | None = None, password: str | None = None,
            host: str | None = None) -> URL:
        if user is None:
            user, password = "postgres", self.password
        return URL.create("postgresql+psycopg", username=user, password=password,
                          host=host or self.host, port=self.port, database=database)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._container.stop()


class ContainerOracleServer(DatabaseServer):
    """Oracle Free: a "database" here is a schema (an Oracle user) in FREEPDB1."""

    dialect = "oracle"
    maintenance_database = "FREEPDB1"

    def __init__(self, name: str, image: str = ORACLE_IMAGE) -> None:
        super().__init__(name)
        try:
            from testcontainers.community.oracle import OracleDbContainer
        except ImportError:
            from testcontainers.oracle import OracleDbContainer
        self.password = new_password()
        self._container = OracleDbContainer(image, oracle_password=self.password)
        self._container.start()
        self.host = self._container.get_container_host_ip()
        self.port = int(self._container.get_exposed_port(1521))

    def internal_address(self) -> tuple[str, int]:
        """The container's own address and listener port: what the Oracle server itself
        reaches (database links between its schemas), unlike the mapped host port."""
        client = self._container.get_docker_client()
        return client.bridge_ip(self._container.get_wrapped_container().id), 1521

    @property
    def version(self) -> str:
        engine = sa.create_engine(self.url("FREEPDB1"))
        try:
            with engine.connect() as conn:
                return str(conn.execute(sa.text(
                    "SELECT version_full FROM product_component_version")).scalar())
        finally:
            engine.dispose()

    def url(self, database: str, *, user: str | None = None, password: str | None = None,
            host: str | None = None) -> URL:
        if user is None:
            user, password = "system", self.password
        return URL.create("oracle+oracledb", username=user, password=password,
                          host=host or self.host, port=self.port,
                          query={"service_name": "FREEPDB1"})

    def create_role(self, name: str, password: str | None, *, superuser: bool = False,
                    createdb: bool = False) -> None:
        pw = password or new_password()
        quoted = '"' + name.upper().replace('"', '""') + '"'
        self.execute([
            f'CREATE USER {quoted} IDENTIFIED BY "{pw}" QUOTA UNLIMITED ON users',
            f"GRANT CREATE SESSION, CREATE TABLE TO {quoted}",
        ], database="FREEPDB1")

    def create_database(self, name: str, *, owner: str | None = None,
                        encoding: str = "AL32UTF8") -> DatabaseRef:
        password = "P" + secrets.token_hex(12)
        self.create_role(name, password)
        return DatabaseRef(self.url("FREEPDB1", user=name.upper(), password=password))

    def drop_database(self, name: str) -> None:
        quoted = '"' + name.upper().replace('"', '""') + '"'
        self.execute(f"DROP USER {quoted} CASCADE", database="FREEPDB1")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._container.stop()


class TestcontainersProvider(Provider):
    """Containers started through Testcontainers: PostgreSQL by default, Oracle on request."""

    __test__ = False  # not a pytest test class despite its name

    name = "testcontainers"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return docker_unavailable_reason()

    def __init__(self) -> None:
        super().__init__()
        reason = self.unavailable_reason()
        if reason:
            raise ProviderUnavailable(f"{self.name}: {reason}")

    def _start_server(self, name: str, **options: Any) -> DatabaseServer:
        if options.pop("dialect", "postgresql") == "oracle":
            return ContainerOracleServer(name, **options)
        return ContainerPostgresServer(name, **options)
