"""When a merge sets a table's indexes aside (indexes.worth_setting_aside): by the costs
measured, up to about 1.27 rows held per row coming in; always into an empty table."""

from __future__ import annotations

import pytest

from tcmerge.merge.indexes import worth_setting_aside


@pytest.mark.parametrize(("held", "incoming", "aside"), [
    (0, 0, True),                    # an empty table (a source never analysed says 0)
    (0, 1_000_000, True),
    (1_000_000, 1_000_000, True),    # DB1 into DB2 of the same size: 3.4 s against 4.1 s
    (1_200_000, 1_000_000, True),
    (1_300_000, 1_000_000, False),
    (10, 3, False),
    (2_000_000, 0, False),
])
def test_indexes_are_set_aside_where_a_build_costs_less_than_kept_indexes(
        held: int, incoming: int, aside: bool) -> None:
    assert worth_setting_aside(held, incoming) is aside
