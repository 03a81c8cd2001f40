"""Oracle Free through Testcontainers: the migrations on a live Oracle server.

There is no Oracle server on these machines; without a Docker engine these tests
skip with the provider's reason. The Oracle SQL itself is covered offline in
tests/unit (compiled DDL and Alembic offline mode).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tcmerge.dburl import DatabaseRef
from tcmerge.providers import DatabaseServer
from tcmerge.providers.containers import TestcontainersProvider
from tcmerge.schema import manage

pytestmark = pytest.mark.oracle


@pytest.fixture(scope="module")
def oracle_server() -> Iterator[DatabaseServer]:
    reason = TestcontainersProvider.unavailable_reason()
    if reason:
        pytest.skip(f"Oracle live tests need a Docker engine: {reason}")
    with TestcontainersProvider() as provider:
        yield provider.start_server("oracle", dialect="oracle")


@pytest.fixture
def oracle_schema(oracle_server: DatabaseServer) -> Iterator[DatabaseRef]:
    ref = oracle_server.create_database("TCMERGE_T1")
    yield ref
    oracle_server.drop_database("TCMERGE_T1")


def test_oracle_upgrade_and_check(oracle_schema: DatabaseRef) -> None:
    result = manage.upgrade(oracle_schema)
    assert result.after == manage.head_revision()
    report = manage.check(oracle_schema)
    assert report.findings == [], [f.as_dict() for f in report.findings]
