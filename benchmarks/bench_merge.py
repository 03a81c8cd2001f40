"""Merge benchmark, run by hand: ``./dev bench bench_merge [--rows N] [--transports copy,dblink]
[--into [both|others]] [--again] [--repeat N]``.

Two sources with N tc_msgarchive rows each (rooms N/50, tc_messages 10 %, two members per
room, timelog N/10; 20 % of the rooms in both sources with colliding msg_ids), generated
server-side with SQL, merged with each transport by ``tcmerge run`` in a child process
(passwords in a 0600 pgpass file). Prints wall time, rows/s, the child's peak RSS (wait4
rusage), the merge's phases (the child's ``timings``), and the baseline measured in the
same run: a plain binary COPY of the same tables with no merge logic, relayed the way
tcmerge's copy transport relays (``relay_copy``), so that the two differ by the merge
logic only. rows/s counts the rows the baseline copies.

The cases:

- the default, an empty target: both sources merged into an empty database. Baseline:
  both sources' tables copied into an empty database (the same tables and keys; the
  second source into a second schema).
- ``--into``: Cisco's flow, DB1 merged into a non-empty DB2. The target is a copy
  (``CREATE DATABASE ... TEMPLATE``) of the last source, generated and vacuumed as the
  others; ``--into`` or ``--into both`` names it among the sources as Cisco's tool does
  (``--source db1 --source db2 --target db2``: the contract's "the target may be one
  of the sources"), ``--into others`` names only the others (``--source db1 --target
  db2``). Baseline: the other source's tables copied into a second schema of a copy of
  that target (its own tables stay where they are).
- ``--again`` (with either case): after each merge, the same merge run again on the
  merged target (nothing to insert; checked), timed as its own run ``<transport>
  again``. Its ``vs base`` compares it with the same baseline as the merge it repeats
  (the case's copy of the sources' tables, measured in the same round): the issue's
  goal is that a re-run costs less than copying once (at most 1.0x). Before the re-run
  the merged target is vacuumed (untimed), as autovacuum would have done after a
  merge, rather than during the timed re-run.

Every timed run starts after a CHECKPOINT, and its database is dropped once it is timed
(no checkpoint or autovacuum left over from the run before; a re-run's database is its
merge's, dropped after the re-run); the sources are vacuumed after generation, as a
long-lived production database is.

``vs base`` compares each run with the mean of the baselines measured just before and
just after it; with ``--repeat N`` (N rounds) every run is printed and then the median of
those ratios. With dblink, ``dblink-plain`` is the same tables moved by dblink cursors
with no merge logic (into the same kind of target as the case's: an empty database, or a
second schema of a copy of DB2): what the dblink transport costs before any rule is
applied, dblink's own floor; dblink runs also print their ratio to the dblink-plain of
their round (``vs floor``; for copy runs the floor is the baseline).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tcmerge.dburl import DatabaseRef, without_password
from tcmerge.merge.pg import libpq_params, relay_copy
from tcmerge.merge.transport import DBLINK_FETCH_ROWS, dblink_connect
from tcmerge.providers import get_provider
from tcmerge.providers.base import DatabaseServer
from tcmerge.schema import manage

TABLES = ("tc_rooms", "tc_users", "tc_messages", "tc_msgarchive", "tc_timelog")


def generate(conn: psycopg.Connection[Any], k: int, n: int) -> None:
    """Source k's data, built inside the server."""
    rooms = max(n // 50, 1)
    shared = rooms // 5
    per_room = -(-n // rooms)
    params = {"k": k, "n": n, "rooms": rooms, "shared": shared, "per": per_room}
    room = ("CASE WHEN i <= %(shared)s THEN 'shared' || i || '@conference-1-c1.example.com' "
            "ELSE 'r' || %(k)s || '_' || i || '@conference-' || %(k)s || '-c1.example.com' END")
    conn.execute(
        "INSERT INTO tc_rooms SELECT " + room + ", 'creator' || i || '@example.com', "
        "'subject ' || i, 'persistent', '<x xmlns=\"jabber:x:data\">' || i || '</x>', "
        "'<message><subject>s</subject></message>', 1, %(per)s + 1 "
        "FROM generate_series(1, %(rooms)s) AS i", params)
    conn.execute(
        "INSERT INTO tc_users SELECT " + room + ", 'user' || u || '@example.com', "
        "'participant', CASE WHEN u = 2 AND %(k)s = 2 THEN 'admin' ELSE 'member' END, "
        + room.replace("END", "END || '/user' || u") + ", NULL, NULL "
        "FROM generate_series(1, %(rooms)s) AS i, generate_series(1, 2) AS u", params)
    conn.execute(
        "INSERT INTO tc_msgarchive SELECT g / %(rooms)s + 1, " + room + ", "
        "'user' || (g %% 7) || '@example.com', 'nick' || (g %% 7), "
        "timestamp '2024-01-01' + g * interval '1 second' + %(k)s * interval '1 ms', 'g', "
        "120, 200, 'message ' || g || ' from source ' || %(k)s || repeat(' lorem ipsum', 9), "
        "'<message type=\"groupchat\"><body>' || g || repeat(' lorem', 20) || '</body></message>',"
        " NULL, NULL, NULL FROM generate_series(0, %(n)s - 1) AS g, "
        "LATERAL (SELECT g %% %(rooms)s + 1 AS i) AS r", params)
    conn.execute(
        "INSERT INTO tc_messages SELECT msg_id, to_jid, sent_date, message_string "
        "FROM tc_msgarchive WHERE msg_id > %(per)s - %(per)s / 10", params)
    conn.execute(
        "INSERT INTO tc_timelog SELECT 'user' || (g %% 2 + 1) || '@example.com', " + room + ", "
        "timestamp '2024-01-01' + g * interval '1 minute', "
        "timestamp '2024-01-01' + g * interval '1 minute' + interval '5 minutes' "
        "FROM generate_series(0, %(n)s / 10 - 1) AS g, "
        "LATERAL (SELECT g %% %(rooms)s + 1 AS i) AS r", params)
    # a production source has long been vacuumed (its visibility map set); here it is
    # done now rather than by autovacuum in the middle of a measured run
    conn.execute("VACUUM (ANALYZE)")


def connect(ref: DatabaseRef) -> psycopg.Connection[Any]:
    return psycopg.connect(**libpq_params(ref), autocommit=True)


def clone(server: DatabaseServer, template: str, name: str) -> DatabaseRef:
    server.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
        sql.Identifier(name)).as_string(None))
    server.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
        sql.Identifier(name), sql.Identifier(template)).as_string(None))
    return server.admin_ref(name)


def settle(server: DatabaseServer) -> None:
    """The same start for every timed run: the previous run's dirty pages written out
    now, not by a checkpoint in the middle of this one."""
    server.execute("CHECKPOINT")


def drop(server: DatabaseServer, ref: DatabaseRef) -> None:
    """A measured database dropped as soon as its run is timed: autovacuum would
    otherwise work on its millions of new rows during the next run."""
    server.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
        sql.Identifier(ref.url.database or "")).as_string(None))


def second_schema(conn: psycopg.Connection[Any]) -> None:
    """Schema b2 with the TC tables (keys included): where the second source goes."""
    conn.execute("CREATE SCHEMA b2")
    for t in TABLES:
        conn.execute(sql.SQL("CREATE TABLE b2.{0} (LIKE public.{0} INCLUDING ALL)").format(
            sql.Identifier(t)))


@dataclass
class Case:
    """What one benchmark case merges and what its baseline copies."""

    #: the database the target (and the baseline's database) is a copy of
    template: str
    #: the sources the baseline copies, with the schema each goes to
    copies: list[tuple[str, DatabaseRef]]
    #: topology names: the target's, then every source's (the target's among them when
    #: it is named as a source)
    target_name: str
    source_names: list[str]
    #: the source databases by topology name (the target is added per run)
    named: dict[str, DatabaseRef]
    title: str


def make_case(sources: list[DatabaseRef], template: str, into: str | None) -> Case:
    if into is None:
        names = [f"source{i}" for i in range(1, len(sources) + 1)]
        return Case(template, list(zip(("public", "b2"), sources, strict=True)), "target",
                    names, dict(zip(names, sources, strict=True)),
                    "empty target: " + " ".join(f"--source {n}" for n in names)
                    + " --target target")
    *others, last = sources
    names = [f"db{i}" for i in range(1, len(sources) + 1)]
    target_name = names[-1]
    source_names = names if into == "both" else names[:-1]
    return Case(last.url.database or "", [("b2", src) for src in others], target_name,
                source_names, dict(zip(names[:-1], others, strict=True)),
                f"{names[0]} into {target_name}, a copy of {last.url.database}: "
                + " ".join(f"--source {n}" for n in source_names)
                + f" --target {target_name}")


def baseline(server: DatabaseServer, case: Case) -> float:
    ref = clone(server, case.template, "bench_baseline")
    settle(server)
    start = time.monotonic()
    with connect(ref) as tconn:
        second_schema(tconn)
        tconn.autocommit = False
        for schema, src in case.copies:
            with connect(src) as sconn:
                for t in TABLES:
                    out_sql = sql.SQL("COPY {} TO STDOUT (FORMAT binary)").format(
                        sql.Identifier(t))
                    in_sql = sql.SQL("COPY {}.{} FROM STDIN (FORMAT binary)").format(
                        sql.Identifier(schema), sql.Identifier(t))
                    with sconn.cursor().copy(out_sql) as out, \
                            tconn.cursor().copy(in_sql) as into:
                        # the relay tcmerge's copy transport uses: the two compare
                        # merge logic, not two ways of moving bytes
                        relay_copy(sconn, out, into.write)
        tconn.commit()
    elapsed = time.monotonic() - start
    drop(server, ref)
    return elapsed


def dblink_baseline(server: DatabaseServer, case: Case) -> float:
    """The same tables moved by the target through dblink cursors (dblink_open, then
    INSERT ... SELECT FROM dblink_fetch, the fetch size tcmerge uses), no merge logic:
    what the dblink transport costs before any rule is applied."""
    ref = clone(server, case.template, "bench_baseline_dblink")
    with connect(ref) as tconn:
        tconn.execute("CREATE EXTENSION IF NOT EXISTS dblink")
        second_schema(tconn)
        types = {t: sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind))
            for name, kind in tconn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
                "ORDER BY attnum", (t,)).fetchall()) for t in TABLES}
    settle(server)
    start = time.monotonic()
    with connect(ref) as tconn:
        tconn.autocommit = False
        for schema, src in case.copies:
            dblink_connect(tconn, "public", "bench", src)
            for t in TABLES:
                tconn.execute("SELECT dblink_open('bench', 'c', %s)",
                              (sql.SQL("SELECT * FROM {}").format(
                                  sql.Identifier(t)).as_string(tconn),))
                fetch = sql.SQL("INSERT INTO {}.{} SELECT * FROM dblink_fetch('bench', 'c', "
                                "%s) AS x({})").format(sql.Identifier(schema),
                                                       sql.Identifier(t), types[t])
                while tconn.execute(fetch, (DBLINK_FETCH_ROWS,)).rowcount > 0:
                    pass
                tconn.execute("SELECT dblink_close('bench', 'c')")
            tconn.execute("SELECT dblink_disconnect('bench')")
        tconn.commit()
    elapsed = time.monotonic() - start
    drop(server, ref)
    return elapsed


Run = tuple[str, float, int, dict[str, Any]]


def run_child(server: DatabaseServer, args: list[str],
              env: dict[str, str]) -> tuple[float, int, dict[str, Any]]:
    """One timed ``tcmerge run`` after a CHECKPOINT: wall time, peak RSS, its JSON."""
    settle(server)
    start = time.monotonic()
    child = subprocess.Popen([sys.executable, "-c", "from tcmerge.cli.app import main; main()",
                              *args], env=env, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.monotonic() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"merge failed ({child.returncode}): {out}")
    return elapsed, usage.ru_maxrss // 1024, json.loads(out)


def inserted(result: dict[str, Any]) -> dict[str, int]:
    """Rows a merge inserted, per table (its JSON's ``tables``)."""
    return {t: int(c["inserted"]) for t, c in result.get("tables", {}).items()
            if c.get("inserted")}


def merge(server: DatabaseServer, case: Case, transport: str, pgpass: Path,
          again: bool) -> list[Run]:
    ref = clone(server, case.template, f"bench_target_{transport}")
    if transport == "dblink":
        with connect(ref) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS dblink")
    named = {case.target_name: ref, **case.named}
    # dblink connects from the target server, which cannot read this client's pgpass
    # file: the databases are named in a topology file whose password_env names a
    # variable of the child's environment (never an argument)
    topology = pgpass.with_suffix(".toml")
    topology.write_text(
        '[cluster]\nname = "bench"\ndomain = "example.com"\nid = "bench"\n'
        + "".join(f'[databases.{n}]\nurl = "'
                  + without_password(r.url).render_as_string(hide_password=False)
                  + '"\npassword_env = "TCMERGE_BENCH_PASSWORD"\n'
                  for n, r in named.items()))
    args = ["run", "--json", "--yes", "--transport", transport, "--topology", str(topology),
            "--target", case.target_name]
    for name in case.source_names:
        args += ["--source", name]
    # PYTHONDONTWRITEBYTECODE (set on some machines) would make every run compile
    # tcmerge's sources again; an installed tcmerge runs from its compiled bytecode
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PG") and k != "PYTHONDONTWRITEBYTECODE"}
    env["PGPASSFILE"] = str(pgpass)
    env["TCMERGE_BENCH_PASSWORD"] = ref.url.password or ""
    runs: list[Run] = [(transport, *run_child(server, args, env))]
    if again:
        # the merged target as autovacuum leaves it some time after a merge (hint bits,
        # visibility map, statistics), not vacuumed during the timed re-run
        with connect(ref) as conn:
            conn.execute("VACUUM (ANALYZE)")
        elapsed, rss, result = run_child(server, args, env)
        if inserted(result):
            raise SystemExit(f"the merge run again inserted rows: {inserted(result)}")
        runs.append((f"{transport} again", elapsed, rss, result))
    topology.unlink()
    drop(server, ref)
    return runs


def phases(result: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.1f}" for k, v in result.get("timings", {}).items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000",
                        help="tc_msgarchive rows per source; several: 200000,2000000")
    parser.add_argument("--transports", default="copy,dblink")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of baseline and merges, interleaved; medians are printed")
    parser.add_argument("--into", nargs="?", const="both", choices=("both", "others"),
                        help="merge DB1 into a copy of DB2 (the last source) instead of an "
                             "empty target; 'both' (the default) names DB2 among the sources "
                             "as Cisco's tool does, 'others' names only DB1")
    parser.add_argument("--again", action="store_true",
                        help="after each merge, time the same merge run again on the merged "
                             "target (nothing to insert)")
    options = parser.parse_args()
    provider = get_provider()
    try:
        server = provider.start_server("bench", settings={"shared_buffers": "256MB",
                                                          "work_mem": "64MB"})
        template = "bench_template"
        manage.upgrade(server.create_database(template))
        fd, name = tempfile.mkstemp(prefix="tcmerge-bench-pgpass-")
        os.close(fd)
        pgpass = Path(name)
        url = server.admin_ref().url
        pgpass.write_text(f"{url.host}:{url.port}:*:{url.username}:{url.password}\n")
        pgpass.chmod(0o600)
        print(f"PostgreSQL {server.version}; {os.cpu_count()} cores")
        header = (f"{'rows/src':>10} {'what':<16} {'wall s':>8} {'rows/s':>10} {'vs base':>8} "
                  f"{'vs floor':>8} {'RSS MB':>7}  phases")
        for n in [int(x) for x in options.rows.split(",")]:
            sources = []
            for k in (1, 2):
                ref = clone(server, template, f"bench_src{k}")
                with connect(ref) as conn:
                    generate(conn, k, n)
                sources.append(ref)
            case = make_case(sources, template, options.into)
            total = 0
            for _schema, src in case.copies:
                with connect(src) as conn:
                    for t in TABLES:
                        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                            sql.Identifier(t))).fetchone()
                        total += int(row[0]) if row is not None else 0
            print(f"{n:,} rows per source; {case.title}", flush=True)
            print(header, flush=True)
            # ``--repeat`` rounds, each a baseline and then every measured run, and a last
            # baseline: each run is compared with the mean of the baselines just before and
            # just after it (this machine's speed drifts), and the medians are printed
            transports = options.transports.split(",")
            extra = ["dblink-plain"] if "dblink" in transports else []
            bases: list[float] = []
            # per run: its ratio to the baseline, to its floor, wall time, RSS, result
            runs: dict[str, list[tuple[float, float, float, int, dict[str, Any]]]] = {}
            pending: list[Run] = []
            for round_ in range(options.repeat + 1):
                bases.append(baseline(server, case))
                floor = {what: elapsed for what, elapsed, _, _ in pending
                         if what == "dblink-plain"}
                for what, elapsed, rss, result in pending:
                    ratio = elapsed / statistics.mean(bases[-2:])
                    # dblink's merges against dblink's own floor, copy's against the
                    # baseline (copy's floor)
                    own = 1.0 if what == "dblink-plain" else elapsed / floor[
                        "dblink-plain"] if what.startswith("dblink") else ratio
                    runs.setdefault(what, []).append((ratio, own, elapsed, rss, result))
                    label = f"{what} #{round_}"
                    print(f"{n:>10,} {label:<16} {elapsed:>8.2f} {total / elapsed:>10,.0f} "
                          f"{ratio:>8.2f} {own:>8.2f} {rss or '-':>7}  {phases(result)}",
                          flush=True)
                pending = []
                if round_ == options.repeat:
                    break
                for what in transports + extra:
                    if what == "dblink-plain":
                        pending.append((what, dblink_baseline(server, case), 0, {}))
                    else:
                        pending += merge(server, case, what, pgpass, options.again)
            base = statistics.median(bases)
            spread = f"  (runs: {', '.join(f'{b:.2f}' for b in bases)})" if len(bases) > 1 else ""
            print(f"{n:>10,} {'baseline':<16} {base:>8.2f} {total / base:>10,.0f} {1:>8.2f} "
                  f"{1:>8.2f} {'-':>7}{spread}", flush=True)
            for what, results in runs.items():
                results.sort(key=lambda r: r[0])
                ratio, _, elapsed, _, result = results[len(results) // 2]
                own = statistics.median_high(r[1] for r in results)
                rss = max(r[3] for r in results)
                line = phases(result)
                if len(results) > 1:
                    line += "  (runs: " + ", ".join(f"{r[2]:.2f} = {r[0]:.2f}x"
                                                    for r in results) + ")"
                print(f"{n:>10,} {what:<16} {elapsed:>8.2f} {total / elapsed:>10,.0f} "
                      f"{ratio:>8.2f} {own:>8.2f} {rss or '-':>7}  {line}", flush=True)
        pgpass.unlink()
    finally:
        provider.close()


if __name__ == "__main__":
    main()
