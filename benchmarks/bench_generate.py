"""Load rate of the fixture generator, against a server-side baseline measured in the same run.

    ./dev bench bench_generate [--rows 1000000] [--messages-per-room 200] [--provider embedded]

Starts a PostgreSQL server through the provider, then, each into a fresh database with the
TC schema and in one transaction:

1. generator: ``generate()`` of ``--rows`` archive rows (users, tc_messages and the time log
   in proportion): generation in Python + COPY, timed end to end;
2. baseline A: ``INSERT INTO tc_msgarchive SELECT ... FROM generate_series(...)`` of the same
   number of rows with the same average column widths as the generated rows (measured on
   them), all on the server;
3. baseline B: COPY of the very same tc_msgarchive text, built in memory beforehand (not
   timed): the server's share of the generator's work.

Prints wall times, rows/s and the ratios. Everything is removed at the end.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import psycopg

from tcmerge.db import libpq_params
from tcmerge.generate import GeneratorSpec, copy_blocks, generate
from tcmerge.providers import get_provider
from tcmerge.schema import manage

BASELINE = """
INSERT INTO tc_msgarchive (msg_id, to_jid, from_jid, nick_jid, sent_date, msg_type, body_len,
                           message_len, body_string, message_string, body_text, message_text,
                           subject)
SELECT i %% %(per_room)s + 1,
       'room' || (i / %(per_room)s) || repeat('r', %(to_w)s),
       repeat('f', %(from_w)s),
       repeat('n', %(nick_w)s),
       timestamp '2016-03-01' + i * interval '1 second',
       'g', %(body_w)s, %(msg_w)s,
       CASE WHEN i %% 50 = 0 THEN NULL ELSE repeat('b', %(body_w)s) END,
       CASE WHEN i %% 50 = 0 THEN NULL ELSE repeat('m', %(msg_w)s) END,
       CASE WHEN i %% 50 = 0 THEN repeat('B', %(long_body_w)s) END,
       CASE WHEN i %% 50 = 0 THEN repeat('M', %(long_msg_w)s) END,
       NULL
FROM generate_series(0, %(rows)s - 1) AS i
"""

WIDTHS = """
SELECT avg(length(to_jid))::int, avg(length(from_jid))::int, avg(length(nick_jid))::int,
       coalesce(avg(length(body_string)), 0)::int, coalesce(avg(length(message_string)), 0)::int,
       coalesce(avg(length(body_text)), 0)::int, coalesce(avg(length(message_text)), 0)::int,
       pg_total_relation_size('tc_msgarchive')
FROM tc_msgarchive
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="archive rows (1,000,000)")
    parser.add_argument("--messages-per-room", type=int, default=200)
    parser.add_argument("--provider", default="embedded")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    per_room = args.messages_per_room
    rooms = max(1, -(-args.rows // per_room))
    spec = GeneratorSpec(seed=args.seed, rooms_per_node=rooms, messages_per_room=per_room)
    with get_provider(args.provider) as provider:
        server = provider.start_server("bench-generate")
        print(f"server: {args.provider} PostgreSQL {server.version}", flush=True)
        gen_ref = server.create_database("bench_gen")
        base_ref = server.create_database("bench_base")
        manage.upgrade(base_ref)
        copy_ref = server.create_database("bench_copy")
        manage.upgrade(copy_ref)

        server.execute("CHECKPOINT")  # each timed phase starts without pending WAL work
        started = time.perf_counter()
        result = generate([gen_ref], spec)
        gen_seconds = time.perf_counter() - started
        counts = result.counts[0]
        archive = counts["tc_msgarchive"]

        with psycopg.connect(**libpq_params(gen_ref)) as conn:
            row = conn.execute(WIDTHS).fetchone()
        assert row is not None
        to_w, from_w, nick_w, body_w, msg_w, long_body_w, long_msg_w, size = row
        params: dict[str, Any] = {
            "rows": archive, "per_room": per_room, "to_w": max(to_w - 8, 1),
            "from_w": from_w, "nick_w": nick_w, "body_w": body_w, "msg_w": msg_w,
            "long_body_w": long_body_w or 8000, "long_msg_w": long_msg_w or 8200,
        }
        server.execute("CHECKPOINT")
        with psycopg.connect(**libpq_params(base_ref)) as conn:
            started = time.perf_counter()
            conn.execute(BASELINE, params)
            conn.commit()
            base_seconds = time.perf_counter() - started
            row = conn.execute("SELECT pg_total_relation_size('tc_msgarchive')").fetchone()
        assert row is not None
        base_size = row[0]

        prebuilt = [block.encode() for _, table, block in copy_blocks(spec)
                    if table == "tc_msgarchive"]
        server.execute("CHECKPOINT")
        with psycopg.connect(**libpq_params(copy_ref)) as conn:
            started = time.perf_counter()
            with conn.cursor() as cur, cur.copy(
                    "COPY tc_msgarchive (msg_id, to_jid, from_jid, nick_jid, sent_date, msg_type,"
                    " body_len, message_len, body_string, message_string, body_text,"
                    " message_text, subject) FROM STDIN") as copy:
                for data in prebuilt:
                    copy.write(data)
            conn.commit()
            copy_seconds = time.perf_counter() - started
        del prebuilt

    total = sum(counts.values())
    gen_rate = archive / gen_seconds
    base_rate = archive / base_seconds
    print(f"rows written: {', '.join(f'{k} {v:,}' for k, v in counts.items())} "
          f"(total {total:,})")
    print(f"generator (generate + COPY, one transaction): {gen_seconds:.2f} s, "
          f"{gen_rate:,.0f} archive rows/s ({total / gen_seconds:,.0f} rows/s all tables), "
          f"tc_msgarchive {size / 1e6:,.0f} MB")
    print(f"baseline (server-side INSERT ... SELECT generate_series, same widths): "
          f"{base_seconds:.2f} s, {base_rate:,.0f} rows/s, tc_msgarchive {base_size / 1e6:,.0f} MB")
    copy_rate = archive / copy_seconds
    print(f"baseline (COPY of the same archive text, pre-built in memory): "
          f"{copy_seconds:.2f} s, {copy_rate:,.0f} rows/s")
    print(f"ratio generator/INSERT-SELECT baseline: {gen_rate / base_rate:.2f}; "
          f"generator/pre-built COPY: {gen_rate / copy_rate:.2f} "
          f"(archive rows; the generator also wrote {total - archive:,} other rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
