"""ROOM_CAPACITY: the merged database holds more persistent rooms than a presence
redundancy group serves (reference: at most 5000 per group)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from tcmerge.cli.app import app

from .data import TcData

pytestmark = pytest.mark.postgresql


def rooms_sql(prefix: str, first: int, last: int, kind: str = "persistent") -> str:
    return (f"INSERT INTO tc_rooms SELECT '{prefix}' || i || '@conference-1-c1.example.com', "
            f"'alice@example.com', 's', '{kind}', '<x/>', '<m/>', 1, 1 "
            f"FROM generate_series({first}, {last}) AS i")


def url(data: TcData) -> str:
    return data.ref.url.render_as_string(hide_password=False)


def validate(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["validate", "--json", *args])
    return result.exit_code, json.loads(result.stdout)


def test_more_persistent_rooms_than_a_group_serves_is_a_warning(
        tc_factory: Callable[..., TcData]) -> None:
    target, one, two = tc_factory(), tc_factory(), tc_factory()
    target.execute(rooms_sql("t", 1, 1000))
    one.execute(rooms_sql("a", 1, 2000))
    # 100 rooms the target holds already and 100 ad-hoc rooms count once and not at all
    two.execute(rooms_sql("b", 1, 2000), rooms_sql("t", 1, 100),
                rooms_sql("adhoc", 1, 100, "ad-hoc"))
    args = ["--source", url(one), "--source", url(two), "--target", url(target)]
    code, out = validate(*args)
    assert code == 0, out
    assert "ROOM_CAPACITY" not in {f["code"] for f in out["findings"]}  # 5000: the limit

    two.execute(rooms_sql("c", 1, 1))
    code, out = validate(*args)
    capacity = [f for f in out["findings"] if f["code"] == "ROOM_CAPACITY"]
    assert code == 0 and len(capacity) == 1, out
    assert capacity[0]["severity"] == "warning" and capacity[0]["count"] == 5001
    assert capacity[0]["table"] == "tc_rooms" and "5000" in capacity[0]["message"]
    code, out = validate("--strict", *args)
    assert code == 1 and not out["ok"]
