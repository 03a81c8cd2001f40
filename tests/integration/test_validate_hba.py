"""The server-to-source path on clusters with their own pg_hba.conf, and password hygiene."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tcmerge.dburl import DatabaseRef
from tcmerge.providers.base import DatabaseServer
from tests.integration.test_validate import via_socket
from tests.integration.validate_helpers import (
    PASSWORD,
    make_tc_database,
    run_validate,
    snapshot,
)

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]

ROLE = "tcuser"
#: set_hba keeps the administrator's two lines first: our lines start at line 3
HBA = [
    "local all all scram-sha-256",                 # 3: tcmerge itself comes through the socket
    "host tgt all 127.0.0.1/32 scram-sha-256",     # 4
    "host src_reject all 127.0.0.1/32 reject",     # 5: refuses the target server's address
    "host src_trust all 127.0.0.1/32 trust",       # 6: no password: dblink refuses it
    "host all all 127.0.0.1/32 scram-sha-256",     # 7
]


def _cluster(cluster_factory: Callable[..., DatabaseServer],
             name: str) -> tuple[DatabaseServer, DatabaseRef, DatabaseRef, DatabaseRef,
                                 DatabaseRef]:
    server = cluster_factory(name)
    server.create_role(ROLE, PASSWORD)
    target = make_tc_database(server, "tgt", ROLE, dblink=True, rooms=())
    reject = make_tc_database(server, "src_reject", ROLE)
    trust = make_tc_database(server, "src_trust", ROLE)
    good = make_tc_database(server, "src_good", ROLE)
    server.set_hba(HBA)
    # tcmerge reaches the sources through the Unix socket; the target server connects
    # to them over TCP at the address they listen on (127.0.0.1)
    return (server, via_socket(server, target), via_socket(server, reject),
            via_socket(server, trust), via_socket(server, good))


def test_hba_reject_and_trust_for_the_target_server(
        cluster_factory: Callable[..., DatabaseServer]) -> None:
    server, target, reject, trust, good = _cluster(cluster_factory, "hba")
    databases = ["tgt", "src_reject", "src_trust", "src_good"]
    before = snapshot(server, databases)

    result = run_validate(target, reject, trust, good)
    assert result.exit_code == 0, result.stdout  # the COPY transport remains
    assert result.json["transport"] == "copy"
    # without --transport dblink nothing connects through dblink (that would hand the
    # passwords to the target server), and the rules are not readable: nothing is known
    assert not result.findings("HBA_REJECTS") and not result.findings("DBLINK_UNAVAILABLE")
    [unprobed] = result.findings("DBLINK_NOT_PROBED")
    assert unprobed["severity"] == "info" and unprobed["database"] == target.label
    assert "not all readable" in unprobed["message"]
    assert "would send the source's password" in unprobed["message"]
    paths = {p["source"]: p for p in result.json["transports"]["dblink"]["sources"]}
    assert paths[good.label]["probe"] is None
    assert paths[good.label]["host"] == "127.0.0.1"
    assert result.json["transports"]["dblink"]["possible"] is False

    # --transport dblink probes live, by SCRAM pass-through only (same role, same secret)
    server.execute([f"GRANT USAGE ON FOREIGN DATA WRAPPER dblink_fdw TO {ROLE}"],
                   database="tgt")
    forced = run_validate(target, reject, trust, good, extra=["--transport", "dblink"])
    assert forced.exit_code == 1
    rejects = forced.findings("HBA_REJECTS")
    assert [f["database"] for f in rejects] == [reject.label]
    assert rejects[0]["severity"] == "error"
    assert rejects[0]["details"]["probe"]["address"] == "127.0.0.1"
    no_password = forced.findings("DBLINK_UNAVAILABLE")
    assert [f["database"] for f in no_password] == [trust.label]
    assert no_password[0]["severity"] == "error"
    assert "password" in no_password[0]["message"]
    assert not forced.findings("DBLINK_SENDS_PASSWORD")
    paths = {p["source"]: p for p in forced.json["transports"]["dblink"]["sources"]}
    assert paths[good.label]["probe"]["ok"] is True
    assert paths[good.label]["auth"] == "scram-passthrough"

    # where the rules are readable, they are evaluated and the rule is named
    for name in databases[1:]:  # catalog privileges are per database
        server.execute([f"GRANT SELECT ON pg_hba_file_rules TO {ROLE}",
                        f"GRANT EXECUTE ON FUNCTION pg_hba_file_rules() TO {ROLE}"],
                       database=name)
    readable = run_validate(target, reject, trust, good)
    assert readable.exit_code == 0
    assert "the catalogs say it cannot reach" in readable.findings(
        "DBLINK_NOT_PROBED")[0]["message"]
    reject_path = readable.findings("HBA_REJECTS")[0]
    assert "line 5" in reject_path["message"] and "reject" in reject_path["message"]
    assert "before line 5" in reject_path["hint"]
    trust_path = readable.findings("DBLINK_UNAVAILABLE")[0]
    assert "line 6" in trust_path["message"] and "trust" in trust_path["message"]
    assert readable.json["transports"]["dblink"]["sources"][2]["hba_accepts"] is True

    assert snapshot(server, databases) == before


def test_known_password_appears_in_no_output_log_or_error(
        cluster_factory: Callable[..., DatabaseServer]) -> None:
    server, target, reject, trust, good = _cluster(cluster_factory, "secrets")
    # --transport dblink then probes by SCRAM pass-through (validation sends no password)
    server.execute([f"GRANT USAGE ON FOREIGN DATA WRAPPER dblink_fdw TO {ROLE}"],
                   database="tgt")
    wrong = DatabaseRef(good.url.set(password=PASSWORD + "-wrong"))
    missing = DatabaseRef(good.url.set(database="no_such_db"))
    texts: list[str] = []
    for as_json in (True, False):
        for args in ([target, good], [target, reject, trust, good], [target, wrong],
                     [target, missing], [target, good, good]):
            result = run_validate(*args, extra=["--transport", "dblink"], as_json=as_json)
            assert result.exit_code in (0, 1)
            texts += [result.stdout, result.stderr]
    # verbose logging goes to stderr and is scrubbed as well
    from typer.testing import CliRunner

    from tcmerge.cli.app import app
    from tests.integration.validate_helpers import text_url

    verbose = CliRunner().invoke(app, ["-v", "validate", "--target", text_url(target),
                                       "--source", text_url(reject), "--source",
                                       text_url(wrong)])
    texts += [verbose.stdout, verbose.stderr]
    assert any("HBA_REJECTS" in t for t in texts) and any("CONNECTION_FAILED" in t for t in texts)
    log = Path(getattr(server, "log")).read_text(errors="replace")  # noqa: B009
    assert "dblink" in "".join(texts)
    for text in [*texts, log]:
        assert PASSWORD not in text
        assert "pa55'w0rd" not in text
