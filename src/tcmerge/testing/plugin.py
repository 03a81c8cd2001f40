"""pytest plugin: real PostgreSQL servers for the tests, started by the tests.

Fixtures
--------
``pg_server``        session-wide server, once per local provider (embedded, and system
                     when installed): tests using it run on both server versions.
``embedded_server``  the embedded server only (heavier tests).
``cluster_factory``  starts extra clusters (own pg_hba.conf, own port) for one test.
``empty_database``   a new database on ``pg_server`` (dropped afterwards).
``tc_database``      the same with the TC schema made by the migrations.

A provider that cannot run gives a skip with its reason; with TCMERGE_REQUIRE_DB=1
(CI) a missing default provider is a failure instead.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tcmerge.config import Settings
from tcmerge.dburl import DatabaseRef
from tcmerge.errors import ProviderUnavailable
from tcmerge.providers import DEFAULT_PROVIDER, PROVIDERS, DatabaseServer, Provider

_counter = itertools.count(1)


def unique_name(prefix: str = "tcdb") -> str:
    return f"{prefix}_{os.getpid()}_{next(_counter)}"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db-provider", default=None,
        help="database provider for the tests (embedded, system, testcontainers, url); "
             "default: embedded and, when installed, system (or TCMERGE_DB_PROVIDER)")


def _chosen_provider(config: pytest.Config) -> str | None:
    return config.getoption("--db-provider") or Settings.from_env().provider


def _default_kind(config: pytest.Config) -> str:
    return _chosen_provider(config) or DEFAULT_PROVIDER


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "pg_server" in metafunc.fixturenames:
        chosen = _chosen_provider(metafunc.config)
        kinds = [chosen] if chosen else ["embedded", "system"]
        metafunc.parametrize("pg_server", kinds, indirect=True, scope="session")


def _open_provider(name: str, default_kind: str) -> Provider:
    try:
        return PROVIDERS[name]()
    except ProviderUnavailable as exc:
        if Settings.from_env().require_db and name == default_kind:
            pytest.fail(f"TCMERGE_REQUIRE_DB is set but PostgreSQL is unavailable: {exc}")
        pytest.skip(f"database provider unavailable: {exc}")


class _Servers:
    """One provider and one shared server per provider kind, for the whole session."""

    def __init__(self, default_kind: str) -> None:
        self.default_kind = default_kind
        self.providers: dict[str, Provider] = {}
        self.servers: dict[str, DatabaseServer] = {}

    def provider(self, kind: str) -> Provider:
        if kind not in self.providers:
            self.providers[kind] = _open_provider(kind, self.default_kind)
        return self.providers[kind]

    def server(self, kind: str) -> DatabaseServer:
        if kind not in self.servers:
            self.servers[kind] = self.provider(kind).start_server(f"shared-{kind}")
        return self.servers[kind]

    def close(self) -> None:
        for provider in self.providers.values():
            provider.close()


@pytest.fixture(scope="session")
def _servers(pytestconfig: pytest.Config) -> Iterator[_Servers]:
    servers = _Servers(_default_kind(pytestconfig))
    yield servers
    servers.close()


@pytest.fixture(scope="session")
def pg_server(request: pytest.FixtureRequest, _servers: _Servers) -> DatabaseServer:
    """A shared PostgreSQL server; the test runs once per available local provider."""
    return _servers.server(request.param)


@pytest.fixture(scope="session")
def embedded_server(_servers: _Servers) -> DatabaseServer:
    return _servers.server(_servers.default_kind)


@pytest.fixture
def cluster_factory(_servers: _Servers) -> Iterator[Callable[..., DatabaseServer]]:
    """Start extra clusters for this test; each is stopped and deleted afterwards."""
    started: list[DatabaseServer] = []
    kind = _servers.default_kind

    def start(name: str = "extra", **options: Any) -> DatabaseServer:
        server = _servers.provider(kind)._start_server(name, **options)
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.close()


@pytest.fixture
def empty_database(pg_server: DatabaseServer) -> Iterator[DatabaseRef]:
    name = unique_name("empty")
    ref = pg_server.create_database(name)
    yield ref
    pg_server.drop_database(name)


@pytest.fixture
def tc_database(pg_server: DatabaseServer) -> Iterator[DatabaseRef]:
    from tcmerge.schema import manage

    name = unique_name("tc")
    ref = pg_server.create_database(name)
    manage.upgrade(ref)
    yield ref
    pg_server.drop_database(name)


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    for name, cls in PROVIDERS.items():
        reason = cls.unavailable_reason()
        lines.append(f"tcmerge provider {name}: {'available' if reason is None else reason}")
    return lines
