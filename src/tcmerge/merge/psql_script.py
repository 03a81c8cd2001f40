"""The PostgreSQL merge as a psql script (``tcmerge run --sql``): connects to nothing.

Rows travel the way tcmerge's ``copy`` transport moves them, through the client: psql
connects to each source in turn and exports its tables with ``\\copy ... TO`` into files
of its current directory (one read-only repeatable-read transaction per source, so the
tables agree), then connects to the target and, in ONE transaction, takes the merge lock,
locks the merged tables against other writers, loads the files into TEMP staging
tables, runs the rules (``tcmerge.merge.core``: the very statements the Oracle merge
runs, compiled for PostgreSQL) and commits. Any error stops psql (ON_ERROR_STOP) and the
target's transaction rolls back: the target is merged or unchanged.

No password is written: psql finds them itself (its prompt, ~/.pgpass, PGPASSFILE or
PGPASSWORD), and no server is ever sent one by another server (no dblink).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from tcmerge.db import MERGE_LOCK_KEY
from tcmerge.dburl import DatabaseRef, libpq_uri
from tcmerge.merge.core import MergeRules, Names
from tcmerge.request import MergeRequest

DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]
NAMES = Names(staging=lambda table: f"tcm_s_{table}", work=lambda name: f"tcm_w_{name}")
#: what every session of the script sets first: text COPY writes and reads dates in ISO
SESSION = ("\\set ON_ERROR_STOP on", "\\encoding UTF8", "SET DateStyle = 'ISO, YMD';",
           "SET IntervalStyle = 'postgres';")


def text_of(statement: sa.ClauseElement) -> str:
    """A statement's PostgreSQL text, constants written out."""
    return str(statement.compile(dialect=DIALECT,
                                 compile_kwargs={"literal_binds": True})).strip() + ";"


def _psql_quote(text: str) -> str:
    """A psql meta-command argument in single quotes."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ident(name: str) -> str:
    return str(DIALECT.identifier_preparer.quote(name))


def copy_file(token: str, inp: int, table: str) -> str:
    return f"tcm_{token}_{inp}_{table}.copy"


def render(request: MergeRequest, token: str) -> str:
    """The whole merge of ``request`` as a psql script."""
    rules = MergeRules(None, request.tables, [r.label for r in request.databases], NAMES)
    # a source that is the target itself (Cisco's "merge DB1 into DB2" names DB2 too): its
    # rows are the target's own, duplicates of input 0; it is not read again
    mirrors = request.sources_named_as_target()
    exported = [i for i in range(1, len(request.sources) + 1) if i not in mirrors]
    files = [copy_file(token, i, t.name) for i in exported for t in request.tables]
    out = [
        f"-- tcmerge PostgreSQL merge (job token {token}): {len(request.sources)} source(s) "
        f"into {request.target.label}",
        "-- Run it with psql from an empty directory (psql starts on the target; the script "
        "then connects itself):",
        f"--   psql -X -f <this file> {_psql_quote(libpq_uri(request.target))}",
        "-- psql connects to each database in turn; passwords come from psql itself (its "
        "prompt,",
        "-- ~/.pgpass, PGPASSFILE or PGPASSWORD): none is written here, and no server sends "
        "one to another.",
        "-- Each source's tables are exported into files of the current directory and "
        "loaded into the target:",
        *(f"--   {name}" for name in files),
        "-- Delete them after the run. What `tcmerge run` does and this script does not: "
        "validation",
        "-- (run `tcmerge validate` with the same inputs first), the snapshot and the job "
        "record (so",
        "-- `tcmerge verify` and `tcmerge restore` do not know this merge). A merge that "
        "validation would",
        "-- refuse for ROOM_CONFLICT stops here too, before anything is written. The "
        "script moves the model's",
        "-- columns (it reads no schema); `tcmerge run` moves the columns the databases "
        "really have.",
    ]
    for i, ref in enumerate(request.sources, 1):
        if i in mirrors:
            out += ["", f"-- source {i} is the target itself: its rows are the target's own "
                        "(all duplicates), not read again"]
            continue
        out += ["", f"-- [export] source {i}: {ref.label} (read only)", *_connect(ref),
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;"]
        for model in request.tables:
            columns = ", ".join(_ident(c.name) for c in model.columns)
            out.append(f"\\copy (SELECT {i} AS inp, {columns} FROM {_ident(model.name)}) "
                       f"TO {_psql_quote(copy_file(token, i, model.name))}")
        out.append("COMMIT;")
    out += ["", f"-- [merge] the target: {request.target.label}", *_connect(request.target),
            "BEGIN;",
            "-- one merge at a time: the lock every tcmerge run and restore takes",
            f"DO $tcmerge$ BEGIN IF NOT pg_try_advisory_xact_lock({MERGE_LOCK_KEY}) THEN "
            "RAISE EXCEPTION 'MERGE_IN_PROGRESS: another tcmerge merge or restore is "
            "changing this target'; END IF; END $tcmerge$;",
            "-- no other writer of the merged tables until COMMIT (readers pass)",
            "LOCK TABLE " + ", ".join(_ident(t.name) for t in request.tables)
            + " IN SHARE MODE;"]
    for model in request.tables:
        staging = NAMES.staging(model.name)
        columns = ", ".join(_ident(c.name) for c in model.columns)
        out += [f"-- staging for {model.name}",
                f"CREATE TEMP TABLE {_ident(staging)} ON COMMIT DROP AS SELECT "
                f"CAST(0 AS smallint) AS inp, {columns} FROM {_ident(model.name)} WITH NO DATA;"]
        out += [f"\\copy {_ident(staging)} (inp, {columns}) FROM "
                f"{_psql_quote(copy_file(token, i, model.name))}"
                for i in exported]
        out.append(f"ANALYZE {_ident(staging)};")
    out.append("-- [analysis] the work tables, in order")
    for (name, _query), create in zip(rules.work_queries(), rules.create_statements(),
                                      strict=True):
        out += [f"-- {name}", text_of(create), text_of(rules.fill_statement(name))]
    for refusal in rules.refusals():
        out += ["-- stop where tcmerge would refuse", text_of(refusal)]
    out.append("-- [apply] the rows kept, then the counters")
    for name, statement in rules.apply_statements():
        out += [f"-- {name}", text_of(statement)]
    out += ["COMMIT;", ""]
    return "\n".join(out)


def _connect(ref: DatabaseRef) -> list[str]:
    return [f"\\connect {_psql_quote(libpq_uri(ref))}", *SESSION]
