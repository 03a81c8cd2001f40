"""validate against a live Oracle Free (Testcontainers); skipped with the provider's reason."""

from __future__ import annotations

import pytest

from tcmerge.providers.containers import TestcontainersProvider
from tcmerge.request import MergeRequest
from tcmerge.schema import manage
from tcmerge.validate import choose_transport, validate

pytestmark = [pytest.mark.oracle, pytest.mark.slow]


def test_oracle_schemas_validate() -> None:
    reason = TestcontainersProvider.unavailable_reason()
    if reason is not None:
        pytest.skip(f"Oracle needs Testcontainers: {reason}")
    with TestcontainersProvider() as provider:
        server = provider.start_server("ora", dialect="oracle")
        target = server.create_database("tcm_target")
        source = server.create_database("tcm_source")
        for ref in (target, source):
            manage.upgrade(ref)
        report = validate(MergeRequest(sources=(source,), target=target))
        assert report.dialect == "oracle"
        # CREATE TABLE only: no database link may be made, and the report says how to grant it
        missing = [f for f in report.findings if f.code == "PRIVILEGE_MISSING"]
        assert missing and "DATABASE LINK" in (missing[0].hint or "")
        assert not report.transports["dblink"]["possible"]
        server.execute("GRANT CREATE DATABASE LINK TO TCM_TARGET", database="FREEPDB1")
        report = validate(MergeRequest(sources=(source,), target=target))
        assert choose_transport(report, None) == "dblink"
