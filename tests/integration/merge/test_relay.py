"""relay_copy: binary COPY moved between sessions in chunks, ended by psycopg or by us."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from tcmerge.merge import pg as mpg

from .data import TcData

pytestmark = pytest.mark.postgresql

#: rows whose last column is NULL end in b"\xff\xff" too; one row longer than a chunk
ROWS = ("SELECT i, CASE WHEN mod(i, 3) = 0 THEN NULL ELSE repeat(chr(233) || 'x', mod(i, 50)) "
        "END, CASE WHEN mod(i, 2) = 0 THEN NULL ELSE i * 7 END FROM generate_series(1, {}) AS i "
        "UNION ALL SELECT 0, repeat('long', 40000), NULL")
TABLE = "CREATE TABLE relayed (i integer, t text, n bigint)"
DIGEST = "SELECT count(*), sum(hash_record_extended(r, 0)) FROM relayed AS r"


def relay(source: TcData, target: TcData, query: str,
          ticks: list[int] | None = None) -> tuple[int, int]:
    """Relay ``query`` of source into ``relayed`` of target; (rows relayed, rowcount)."""
    with mpg.session(source.ref, role="test", autocommit=True) as sconn, \
            mpg.session(target.ref, role="test") as tconn:
        cur = tconn.cursor()
        with sconn.cursor().copy(f"COPY ({query}) TO STDOUT (FORMAT binary)") as out, \
                cur.copy("COPY relayed FROM STDIN (FORMAT binary)") as into:
            rows = mpg.relay_copy(sconn, out, into.write, every=1000,
                                  tick=None if ticks is None else ticks.append)
        tconn.commit()
        # the source session is ready for the next statement
        assert sconn.execute("SELECT 1").fetchone() == (1,)
        return rows, cur.rowcount


@pytest.mark.parametrize("n", [0, 1, 2500])
def test_every_row_arrives_unchanged(tc_factory: Callable[..., TcData], n: int) -> None:
    source, target = tc_factory(), tc_factory()
    source.execute(TABLE, "INSERT INTO relayed " + ROWS.format(n))
    target.execute(TABLE)
    ticks: list[int] = []
    rows, rowcount = relay(source, target, "SELECT * FROM relayed", ticks)
    assert rows == rowcount == n + 1
    assert target.query(DIGEST) == source.query(DIGEST)
    assert ticks == list(range(1000, n + 2, 1000))


def test_an_empty_result_relays_header_and_trailer(tc_factory: Callable[..., TcData]) -> None:
    source, target = tc_factory(), tc_factory()
    target.execute(TABLE)
    assert relay(source, target, "SELECT 1, 'x', 2::bigint WHERE false") == (0, 0)
    assert target.count("relayed") == 0


def test_a_server_error_in_the_middle_raises_the_servers_words(
        tc_factory: Callable[..., TcData]) -> None:
    source, target = tc_factory(), tc_factory()
    target.execute(TABLE)
    failing = ("SELECT i, 'row ' || i, (100 / (3000 - i))::bigint "
               "FROM generate_series(1, 5000) AS i")
    with pytest.raises(psycopg.errors.DivisionByZero, match="division by zero"):
        relay(source, target, failing)
    assert target.count("relayed") == 0
    # the source session is usable after the error
    with mpg.session(source.ref, role="test", autocommit=True) as sconn:
        with pytest.raises(psycopg.errors.DivisionByZero), \
                sconn.cursor().copy(f"COPY ({failing}) TO STDOUT (FORMAT binary)") as out:
            mpg.relay_copy(sconn, out, lambda chunk: None)
        assert sconn.execute("SELECT 2").fetchone() == (2,)
