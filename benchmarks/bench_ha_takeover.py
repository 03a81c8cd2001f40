"""Real time for the backup to load its peer's rooms on takeover (1,000 and 10,000 rooms).

Baseline, measured in the same run on the same rows: a plain SELECT of the room JIDs
of the alias. The takeover does more: it raises the fencing number of every lease in
one transaction (UPDATE + INSERT ... SELECT) and reads the leases back.

    ./dev bench bench_ha_takeover
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import sqlalchemy as sa

from tcmerge.db import create_engine
from tcmerge.ha.rooms import RoomService
from tcmerge.providers import get_provider
from tcmerge.schema import manage
from tcmerge.schema.tc import tc_rooms

SIZES = (1_000, 10_000)
REPEAT = 5


def alias(size: int) -> str:
    return f"conference-{size}-bench.example.com"


def make_rooms(engine: sa.Engine, size: int) -> None:
    """Rooms generated inside the server (no rows through Python)."""
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO tc_rooms (room_jid, creator_jid, subject, type, config, spacket, "
            "start_msg_id, next_msg_id) "
            "SELECT 'room' || g || '@' || :alias, 'admin@example.com', 'room ' || g, "
            "'persistent', '<x/>', '<message/>', 1, 1 FROM generate_series(1, :n) AS g"
        ), {"alias": alias(size), "n": size})


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    with get_provider() as provider:
        server = provider.start_server("bench-ha")
        ref = server.create_database("bench_ha")
        manage.upgrade(ref)
        engine = create_engine(ref)
        print(f"PostgreSQL {server.version}; median of {REPEAT} runs each")
        print(f"{'rooms':>7} {'baseline SELECT':>16} {'takeover load':>14} {'unload':>9} "
              f"{'ratio':>6}")
        for size in SIZES:
            make_rooms(engine, size)
            home, backup = RoomService("home", engine), RoomService("backup", engine)
            assert home.load([alias(size)]) == size
            query = sa.select(tc_rooms.c.room_jid).where(
                tc_rooms.c.room_jid.endswith("@" + alias(size), autoescape=True))

            def baseline(q: sa.Select[tuple[str]] = query) -> None:
                with engine.connect() as conn:
                    assert len(conn.execute(q).all()) == size  # noqa: B023

            base, load, unload = [], [], []
            for _ in range(REPEAT):
                base.append(timed(baseline))
                backup.start()
                load.append(timed(lambda b=backup, n=size: b.load([alias(n)])))
                assert len(backup.hosted()) == size
                unload.append(timed(lambda b=backup, n=size: b.unload([alias(n)])))
            b, lo, un = (statistics.median(x) for x in (base, load, unload))
            print(f"{size:>7} {b * 1000:>13.1f} ms {lo * 1000:>11.1f} ms {un * 1000:>6.1f} ms "
                  f"{lo / b:>6.1f}")
        engine.dispose()


if __name__ == "__main__":
    main()
