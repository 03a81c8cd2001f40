"""Merge benchmark, run by hand: ``./dev bench bench_merge [--rows N] [--transports copy,dblink]``.

Two sources with N tc_msgarchive rows each (rooms N/50, tc_messages 10 %, two members per
room, timelog N/10; 20 % of the rooms in both sources with colliding msg_ids), generated
server-side with SQL, merged into an empty target with each transport by ``tcmerge run``
in a child process (passwords in a 0600 pgpass file). Prints wall time, rows/s, the
child's peak RSS (wait4 rusage), and the baseline measured in the same run: a plain
binary COPY of the same tables into an empty database (the same tables and keys; the
second source into a second schema) with no merge logic, relayed the way tcmerge's copy
transport relays (``relay_copy``), so that the two differ by the merge logic only.

Every timed run starts after a CHECKPOINT, and its database is dropped once it is timed
(no checkpoint or autovacuum left over from the run before); the sources are vacuumed
after generation, as a long-lived production database is.

``vs base`` compares each run with the mean of the baselines measured just before and
just after it; with ``--repeat N`` (N rounds) the median of those ratios is printed, with
every run. With dblink, ``dblink-plain`` is the same tables moved by dblink cursors with
no merge logic: what the dblink transport costs before any rule is applied.
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


def baseline(server: DatabaseServer, template: str, sources: list[DatabaseRef]) -> float:
    ref = clone(server, template, "bench_baseline")
    settle(server)
    start = time.monotonic()
    with connect(ref) as tconn:
        second_schema(tconn)
        tconn.autocommit = False
        for schema, src in zip(("public", "b2"), sources, strict=True):
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


def dblink_baseline(server: DatabaseServer, template: str, sources: list[DatabaseRef]) -> float:
    """The same tables moved by the target through dblink cursors (dblink_open, then
    INSERT ... SELECT FROM dblink_fetch, the fetch size tcmerge uses), no merge logic:
    what the dblink transport costs before any rule is applied."""
    ref = clone(server, template, "bench_baseline_dblink")
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
        for schema, src in zip(("public", "b2"), sources, strict=True):
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


def merge(server: DatabaseServer, template: str, sources: list[DatabaseRef], transport: str,
          pgpass: Path) -> tuple[float, int, dict[str, Any]]:
    ref = clone(server, template, f"bench_target_{transport}")
    if transport == "dblink":
        with connect(ref) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS dblink")
    bare = [without_password(r.url).render_as_string(hide_password=False)
            for r in [ref, *sources]]
    # dblink connects from the target server, which cannot read this client's pgpass
    # file: the databases are named in a topology file whose password_env names a
    # variable of the child's environment (never an argument)
    topology = pgpass.with_suffix(".toml")
    names = ["target", *(f"source{i}" for i in range(1, len(sources) + 1))]
    topology.write_text('[cluster]\nname = "bench"\ndomain = "example.com"\nid = "bench"\n'
                        + "".join(f'[databases.{n}]\nurl = "{u}"\n'
                                  f'password_env = "TCMERGE_BENCH_PASSWORD"\n'
                                  for n, u in zip(names, bare, strict=True)))
    args = ["run", "--json", "--yes", "--transport", transport, "--topology", str(topology),
            "--target", names[0]]
    for name in names[1:]:
        args += ["--source", name]
    # PYTHONDONTWRITEBYTECODE (set on some machines) would make every run compile
    # tcmerge's sources again; an installed tcmerge runs from its compiled bytecode
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PG") and k != "PYTHONDONTWRITEBYTECODE"}
    env["PGPASSFILE"] = str(pgpass)
    env["TCMERGE_BENCH_PASSWORD"] = ref.url.password or ""
    settle(server)
    start = time.monotonic()
    child = subprocess.Popen([sys.executable, "-c", "from tcmerge.cli.app import main; main()",
                              *args], env=env, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.monotonic() - start
    topology.unlink()
    child.returncode = os.waitstatus_to_exitcode(status)
    result = json.loads(out)
    if child.returncode != 0:
        raise SystemExit(f"merge failed ({child.returncode}): {out}")
    drop(server, ref)
    return elapsed, usage.ru_maxrss // 1024, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000",
                        help="tc_msgarchive rows per source; several: 200000,2000000")
    parser.add_argument("--transports", default="copy,dblink")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of baseline and merges, interleaved; medians are printed")
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
        print(f"{'rows/src':>10} {'what':<12} {'wall s':>8} {'rows/s':>10} {'vs base':>8} "
              f"{'RSS MB':>7}  phases")
        for n in [int(x) for x in options.rows.split(",")]:
            sources = []
            for k in (1, 2):
                ref = clone(server, template, f"bench_src{k}")
                with connect(ref) as conn:
                    generate(conn, k, n)
                sources.append(ref)
            with connect(sources[0]) as conn:
                counts = [conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                    sql.Identifier(t))).fetchone() for t in TABLES]
                total = sum(int(row[0]) for row in counts if row is not None)
            total *= 2
            # ``--repeat`` rounds, each a baseline and then every measured run, and a last
            # baseline: each run is compared with the mean of the baselines just before and
            # just after it (this machine's speed drifts), and the medians are printed
            transports = options.transports.split(",")
            extra = ["dblink-plain"] if "dblink" in transports else []
            bases: list[float] = []
            runs: dict[str, list[tuple[float, float, int, dict[str, Any]]]] = {}
            pending: list[tuple[str, float, int, dict[str, Any]]] = []
            for round_ in range(options.repeat + 1):
                bases.append(baseline(server, template, sources))
                for what, elapsed, rss, result in pending:
                    ratio = elapsed / statistics.mean(bases[-2:])
                    runs.setdefault(what, []).append((ratio, elapsed, rss, result))
                pending = []
                if round_ == options.repeat:
                    break
                for what in transports + extra:
                    if what == "dblink-plain":
                        pending.append((what, dblink_baseline(server, template, sources), 0, {}))
                    else:
                        pending.append((what, *merge(server, template, sources, what, pgpass)))
            base = statistics.median(bases)
            spread = f"  (runs: {', '.join(f'{b:.2f}' for b in bases)})" if len(bases) > 1 else ""
            print(f"{n:>10,} {'baseline':<12} {base:>8.2f} {total / base:>10,.0f} {1:>8.2f} "
                  f"{'-':>7}{spread}", flush=True)
            for what, results in runs.items():
                results.sort(key=lambda r: r[0])
                ratio, elapsed, rss, result = results[len(results) // 2]
                rss = max(r[2] for r in results)
                phases = " ".join(f"{k}={v:.1f}" for k, v in result.get("timings", {}).items())
                if len(results) > 1:
                    phases += "  (runs: " + ", ".join(f"{r[1]:.2f} = {r[0]:.2f}x"
                                                      for r in results) + ")"
                print(f"{n:>10,} {what:<12} {elapsed:>8.2f} {total / elapsed:>10,.0f} "
                      f"{ratio:>8.2f} {rss or '-':>7}  {phases}", flush=True)
        pgpass.unlink()
    finally:
        provider.close()


if __name__ == "__main__":
    main()
