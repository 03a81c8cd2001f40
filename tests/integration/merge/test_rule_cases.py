"""The merge rules' case tables (``tests/cases/rules/``) run live and compiled.

PostgreSQL: every case runs live through the CLI (``run --json --yes``), once with
``--transport copy`` and once with ``--transport dblink``, on small databases made from
the merge tests' template (``tc_factory``). Checked per case: the exit code, the rule
findings, the named counts, the target's rows of the named tables (exactly), the sources
unchanged, no helper table left, the job record; a refused run (exit 1) leaves the
target unchanged and records no job; a successful one run again (copy) inserts nothing
and changes nothing.

Oracle: there is no Oracle server here, so the Oracle side is COMPILED, NOT EXECUTED.
For each case the whole Oracle merge plan (``OraclePlan``: lock, links, staging, the
rules' work tables, apply, verify, job) is built for the case's table selection and
number of sources, every statement is compiled for the Oracle dialect, and every
statement in sqlglot's Oracle grammar is parsed (the rules' work queries and apply
statements all are; LOCK TABLE, database link DDL and PL/SQL blocks are outside that
grammar and only compiled). This proves the case's rules have Oracle statements that
compile and parse; it does not prove Oracle computes the case's expected rows -- the
plan does not depend on the rows at all, only on the selection.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import json
import os
import pkgutil
import re
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import sqlglot
from typer.testing import CliRunner

from tcmerge.cli.app import app
from tcmerge.dburl import DatabaseRef, libpq_uri, parse_database
from tcmerge.schema import tc

from ...cases import rules as case_tables
from .data import T0, TcData

#: finding codes the merge rules produce: a case's findings are compared on these (and
#: on any other code the case names); the rest (SPACE_ESTIMATE, a dblink password
#: warning, ...) depend on the machine, not on the rules
RULE_CODES = frozenset({
    "ROOM_CONFLICT", "ROOM_DIVERGED", "AFFILIATION_CONFLICT", "BAN_NOT_APPLIED",
    "MSG_ID_COLLISION", "DUPLICATE_ROWS", "AFT_INDEX_COLLISION", "INVALID_VALUE",
    "INVALID_ENCODING"})
DATE_COLUMNS = frozenset({"sent_date", "stamp", "start", "end", "timestampvalue"})
TABLES = {t.name: t for t in tc.ALL_TABLES}


def _len(*columns: str) -> Callable[[dict[str, Any]], int]:
    """A length default: the first non-NULL of ``columns``' values, 0 when all are NULL."""
    def length(row: dict[str, Any]) -> int:
        for column in columns:
            if row.get(column) is not None:
                return len(row[column])
        return 0
    return length


#: Every column a case may leave out, with its value (a callable computes it from the
#: row's other values). Inputs and expected rows are completed the same way.
DEFAULTS: dict[str, dict[str, Any]] = {
    "tc_rooms": {"creator_jid": "alice@example.com", "subject": "hello",
                 "type": "persistent", "config": "<x/>", "spacket": "<s/>",
                 "start_msg_id": 1, "next_msg_id": 1},
    "tc_users": {"role": "participant", "affiliation": "member",
                 "nick_jid": lambda r: f"{r['room_jid']}/{r['real_jid'].split('@')[0]}",
                 "reason": None, "initiator_jid": None},
    "tc_messages": {"stamp": 0, "msg": lambda r: f"<m>{r['msg_id']}</m>"},
    "tc_msgarchive": {"from_jid": "alice@example.com",
                      "nick_jid": lambda r: f"{r['to_jid']}/alice", "sent_date": 0,
                      "msg_type": "g", "body_string": None, "message_string": None,
                      "body_text": None, "message_text": None, "subject": None,
                      "body_len": _len("body_string", "body_text"),
                      "message_len": _len("message_string", "message_text")},
    "tc_timelog": {"end": None},
    "jm": {"from_jid": "bob@example.com", "sent_date": 0, "subject": None,
           "thread_id": None, "msg_type": "c", "direction": "I", "body_string": None,
           "message_string": None, "body_text": None, "message_text": None,
           "history_flag": None, "body_len": _len("body_string", "body_text"),
           "message_len": _len("message_string", "message_text")},
    "aft_log": {"jid": "alice@example.com", "to_jid": "bob@example.com", "method": "Peer",
                "filename": "f.txt", "real_filename": "f.txt", "file_type": "text",
                "chat_type": "im", "file_server": "fs1.example.com", "file_path": "/files",
                "file_size": 10, "bytes_transferred": 10, "timestampvalue": 0},
}


def complete(table: str, row: dict[str, Any]) -> tuple[Any, ...]:
    """A case's row as the table's full row (defaults filled, dates made), in column order."""
    unknown = set(row) - {c.name for c in TABLES[table].columns}
    assert not unknown, f"{table}: no column(s) {sorted(unknown)}"
    full = dict(row)
    for column, default in DEFAULTS.get(table, {}).items():
        if column not in full:
            full[column] = default(full) if callable(default) else default
    for column in DATE_COLUMNS & set(full):
        if isinstance(full[column], int):
            full[column] = T0 + dt.timedelta(minutes=full[column])
    missing = [c.name for c in TABLES[table].columns if c.name not in full]
    assert not missing, f"{table}: the case gives no {missing}"
    return tuple(full[c.name] for c in TABLES[table].columns)


# -- the cases ---------------------------------------------------------------------------
def load_cases() -> dict[str, dict[str, Any]]:
    cases: dict[str, dict[str, Any]] = {}
    for info in sorted(pkgutil.iter_modules(case_tables.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{case_tables.__name__}.{info.name}")
        for name, case in module.CASES.items():
            cases[f"{info.name}:{name}"] = case
    return cases


CASES = load_cases()


def case_params() -> list[Any]:
    return [pytest.param(case, id=case_id) for case_id, case in CASES.items()]


def sources_of(case: dict[str, Any]) -> list[int]:
    """The --source arguments as input numbers (0: the target itself)."""
    given = case.get("sources", range(1, len(case["inputs"])))
    return [0 if s == "target" else int(s) for s in given]


def selection(case: dict[str, Any]) -> tuple[sa.Table, ...]:
    return tc.tables_for(case.get("options", {}).get("tables"))


# -- PostgreSQL, live --------------------------------------------------------------------
def url(ref: DatabaseRef) -> str:
    return ref.url.render_as_string(hide_password=False)


def load(db: TcData, spec: dict[str, Any]) -> None:
    """One input's set-up SQL, then its rows, in one transaction."""
    unknown = set(spec) - set(TABLES) - {"sql"}
    assert not unknown, f"unknown keys in an input: {sorted(unknown)}"
    engine = db.engine()
    try:
        with engine.begin() as conn:
            for statement in spec.get("sql", []):
                conn.exec_driver_sql(statement)
            for table in tc.ALL_TABLES:
                rows = [dict(zip((c.name for c in table.columns), complete(table.name, r),
                                 strict=True)) for r in spec.get(table.name, [])]
                if rows:
                    conn.execute(table.insert(), rows)
    finally:
        engine.dispose()


def rows_of(db: TcData, table: str) -> list[tuple[Any, ...]]:
    t = TABLES[table]
    engine = db.engine()
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.select(*t.columns))]
    finally:
        engine.dispose()


def digest(db: TcData) -> dict[str, str]:
    """Byte-exact content of every TC table (ordered md5 of every row's text)."""
    return {t.name: str(db.query(
        f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, E'\\n' "
        f"ORDER BY t::text)), '') FROM {t.name} AS t")[0][0]) for t in tc.ALL_TABLES}


def run(target: TcData, dbs: list[TcData], case: dict[str, Any],
        transport: str) -> tuple[int, dict[str, Any]]:
    options = case.get("options", {})
    args = ["run", "--json", "--yes", "--transport", transport, "--target", url(target.ref)]
    for i in sources_of(case):
        args += ["--source", url(dbs[i].ref)]
    if options.get("tables"):
        args += ["--tables", options["tables"]]
    if options.get("strict"):
        args.append("--strict")
    result = CliRunner().invoke(app, args)
    assert result.stdout.strip(), result.output
    return result.exit_code, json.loads(result.stdout)


def finding_set(out: dict[str, Any], named: set[str]) -> set[str]:
    codes = RULE_CODES | {n.split()[1] for n in named}
    return {f"{f['severity']} {f['code']}" for f in out.get("findings", [])
            if f["code"] in codes}


def check_outcome(out: dict[str, Any], code: int, expect: dict[str, Any]) -> None:
    assert code == expect.get("exit", 0), out
    if "findings" in expect:
        named = set(expect["findings"])
        assert finding_set(out, named) == named, out.get("findings")
    for table, counts in expect.get("counts", {}).items():
        got = out["tables"][table]
        assert {k: got[k] for k in counts} == counts, (table, got)


def helpers_left(db: TcData) -> list[tuple[Any, ...]]:
    """Objects a merge makes and must remove: work/staging tables, dblink servers."""
    return db.query("SELECT relname FROM pg_class WHERE relname LIKE 'tcm\\_%' "
                    "UNION ALL SELECT srvname FROM pg_foreign_server "
                    "WHERE srvname LIKE 'tcm%'")


@pytest.mark.postgresql
@pytest.mark.parametrize("transport", ["copy", "dblink"])
@pytest.mark.parametrize("case", case_params())
def test_case_on_postgresql(tc_factory: Callable[..., TcData], case: dict[str, Any],
                            transport: str) -> None:
    expect = case["expect"]
    dbs = [tc_factory(prefix="tccase") for _ in case["inputs"]]
    target = dbs[0]
    if transport == "dblink":
        target.execute("CREATE EXTENSION IF NOT EXISTS dblink")
    for db, spec in zip(dbs, case["inputs"], strict=True):
        load(db, spec)
    before = digest(target)
    sources_before = {i: digest(dbs[i]) for i in sources_of(case) if i}

    code, out = run(target, dbs, case, transport)
    check_outcome(out, code, expect)
    for table, rows in expect.get("rows", {}).items():
        wanted = [complete(table, r) for r in rows]
        assert Counter(rows_of(target, table)) == Counter(wanted), (
            table, sorted(rows_of(target, table), key=repr), sorted(wanted, key=repr))
    # rule 8: sources never change; the helpers are removed
    assert {i: digest(dbs[i]) for i in sources_before} == sources_before
    assert helpers_left(target) == []
    jobs = target.query("SELECT job_id, status, counts, inputs FROM tcmerge_jobs")
    if expect.get("exit", 0) != 0:
        # refused: nothing written, no job
        assert digest(target) == before
        assert out["ok"] is False and out.get("job_id") is None
        assert [j for j in jobs if j[1] == "succeeded"] == []
        return
    # rule 9: the job record, with the run's counts and no password
    assert out["ok"] is True
    [(job_id, status, counts, inputs)] = jobs
    assert (job_id, status) == (out["job_id"], "succeeded")
    assert json.loads(counts)["tables"] == out["tables"]
    if "job_tables" in expect:
        assert sorted(json.loads(counts)["tables"]) == sorted(expect["job_tables"])
    for db in dbs:
        assert str(db.ref.url.password) not in inputs
    if transport != "copy":
        return
    # rule 8: the same merge again inserts nothing and changes nothing
    merged = digest(target)
    code, again = run(target, dbs, case, transport)
    check_outcome(again, code, {"exit": 0, **expect.get("again", {})})
    assert {t: c["inserted"] for t, c in again["tables"].items()} == dict.fromkeys(
        again["tables"], 0), again["tables"]
    assert digest(target) == merged


# -- PostgreSQL, the merge as a psql script (run --sql) -----------------------------------
def psql_binary() -> str:
    from tcmerge.providers.local import find_embedded_bin, find_system_bin

    bin_dir = find_embedded_bin() or find_system_bin()
    assert bin_dir is not None and (bin_dir / "psql").exists(), "no psql here"
    return str(bin_dir / "psql")


def run_script(target: TcData, dbs: list[TcData], case: dict[str, Any],
               workdir: Path) -> subprocess.CompletedProcess[str]:
    """``tcmerge run --sql`` for the case's inputs, then the script through psql in
    ``workdir``, passwords from a password file (none is in the script)."""
    options = case.get("options", {})
    args = ["run", "--sql", "--target", url(target.ref)]
    for i in sources_of(case):
        args += ["--source", url(dbs[i].ref)]
    if options.get("tables"):
        args += ["--tables", options["tables"]]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    script = result.stdout
    for db in dbs:
        assert str(db.ref.url.password) not in script
    (workdir / "merge.sql").write_text(script)
    pgpass = workdir / "pgpass"
    pgpass.write_text("".join(
        f"{db.ref.url.host}:{db.ref.url.port}:{db.ref.url.database}:{db.ref.url.username}:"
        f"{db.ref.url.password}\n" for db in dbs))
    pgpass.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    start = libpq_uri(target.ref)  # psql starts somewhere; the script connects itself
    return subprocess.run([psql_binary(), "-X", "-q", "-f", "merge.sql", start], cwd=workdir,
                          env={**env, "PGPASSFILE": str(pgpass)}, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.postgresql
@pytest.mark.parametrize("case", case_params())
def test_case_as_a_psql_script(tc_factory: Callable[..., TcData], case: dict[str, Any],
                               tmp_path: Path) -> None:
    """The statements the Oracle merge runs (the rules written once), compiled for
    PostgreSQL and run by psql: the case's rows, the sources unchanged; a room conflict
    stops the script with the target unchanged."""
    expect = case["expect"]
    refused = expect.get("exit", 0) != 0
    if refused and "error ROOM_CONFLICT" not in expect.get("findings", set()):
        pytest.skip("refused by validation, which the script leaves to tcmerge validate")
    dbs = [tc_factory(prefix="tcscript") for _ in case["inputs"]]
    target = dbs[0]
    for db, spec in zip(dbs, case["inputs"], strict=True):
        load(db, spec)
    before = digest(target)
    sources_before = {i: digest(dbs[i]) for i in sources_of(case) if i}

    done = run_script(target, dbs, case, tmp_path)
    assert {i: digest(dbs[i]) for i in sources_before} == sources_before
    assert helpers_left(target) == []
    if refused:
        assert done.returncode != 0 and "ROOM_CONFLICT" in done.stderr, done
        assert digest(target) == before
        return
    assert done.returncode == 0, done.stderr
    for table, rows in expect.get("rows", {}).items():
        wanted = [complete(table, r) for r in rows]
        assert Counter(rows_of(target, table)) == Counter(wanted), (
            table, sorted(rows_of(target, table), key=repr), sorted(wanted, key=repr))
    # the same script again inserts nothing
    merged = digest(target)
    again = run_script(target, dbs, case, tmp_path)
    assert again.returncode == 0, again.stderr
    assert digest(target) == merged


def test_every_rule_has_cases() -> None:
    """Rules 1 to 9 of the contract each have a module with several cases."""
    per_rule = Counter(case_id.split("_")[0] for case_id in CASES)
    assert sorted(per_rule) == [f"rule{n}" for n in range(1, 10)], per_rule
    assert all(n >= 3 for n in per_rule.values()), per_rule


# -- Oracle, compiled (no server) ----------------------------------------------------------
#: statements of the plan outside sqlglot's Oracle grammar: compiled, not parsed
UNPARSED = re.compile(r"^(LOCK TABLE |DROP DATABASE LINK |CREATE (PUBLIC )?DATABASE LINK "
                      r"|ALTER SESSION CLOSE DATABASE LINK |BEGIN\b|DECLARE\b)")
LINK = re.compile(r'@"TCM_AB12CD34_L\d+"')


def oracle_ref(name: str) -> DatabaseRef:
    return parse_database(f"oracle+oracledb://{name}@{name}.example.com:1521/"
                          "?service_name=FREEPDB1").with_password("not-used")


@functools.cache
def oracle_plan_checked(tables: tuple[str, ...], sources: tuple[int, ...]) -> tuple[
        dict[str, int], list[str]]:
    """Build and check the Oracle plan once per (selection, sources); returns the number
    of statements parsed/only compiled and the phases' notes."""
    from tcmerge.merge.oracle_merge import OraclePlan, render_script
    from tcmerge.request import MergeRequest

    refs = [oracle_ref(f"db{i}") for i in range(max(sources, default=0) + 1)]
    request = MergeRequest(sources=tuple(refs[i] for i in sources), target=refs[0],
                           tables=tuple(TABLES[t] for t in tables))
    plan = OraclePlan(request, "ab12cd34", "private")
    assert render_script(plan).count(";") > 0
    tally = {"parsed": 0, "compiled": 0}
    notes = []
    for step in plan.script():
        if step.statement is None:
            continue
        text = step.sql()
        notes.append(step.note)
        if UNPARSED.match(text):
            tally["compiled"] += 1
            continue
        # a table over a database link (name@link) is Oracle syntax sqlglot lacks
        sqlglot.parse_one(LINK.sub("", text), read="oracle",
                          error_level=sqlglot.ErrorLevel.RAISE)
        tally["parsed"] += 1
    return tally, notes


@pytest.mark.parametrize("case", case_params())
def test_case_compiles_for_oracle(case: dict[str, Any]) -> None:
    tables = tuple(t.name for t in selection(case))
    tally, notes = oracle_plan_checked(tables, tuple(sources_of(case)))
    assert tally["parsed"] > tally["compiled"]
    # the rules of every table the case merges are in the plan: analysed and applied
    for name in tables:
        assert f"apply: {name}" in notes, (name, notes)
    for name in case["expect"].get("rows", {}):
        assert name in tables
