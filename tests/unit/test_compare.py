from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import oracle

from tcmerge.schema.compare import ColumnShape, can_hold, shape_of
from tcmerge.schema.types import jid


def test_shapes() -> None:
    assert shape_of(jid()) == ColumnShape("varchar", 3071)
    assert shape_of(oracle.VARCHAR2(3071)) == ColumnShape("varchar", 3071)
    assert shape_of(sa.Text()) == ColumnShape("text")
    assert shape_of(oracle.CLOB()) == ColumnShape("text")
    assert shape_of(oracle.NUMBER(19, 0)) == ColumnShape("bigint")
    assert shape_of(oracle.NUMBER(None, 0)) == ColumnShape("bigint")
    # neither precision nor scale: fractions and any magnitude (audit finding)
    assert shape_of(oracle.NUMBER()) == ColumnShape("numeric")
    assert shape_of(sa.Numeric()) == ColumnShape("numeric")
    assert shape_of(sa.BigInteger()) == ColumnShape("bigint")
    assert shape_of(sa.TIMESTAMP()) == ColumnShape("timestamp")
    assert shape_of(sa.TIMESTAMP(timezone=True)) == ColumnShape("timestamptz")
    assert shape_of(oracle.TIMESTAMP(timezone=True)) == ColumnShape("timestamptz")


def test_can_hold() -> None:
    v100, v3071 = ColumnShape("varchar", 100), ColumnShape("varchar", 3071)
    assert can_hold(v3071, v100)
    assert not can_hold(v100, v3071)
    assert can_hold(ColumnShape("text"), v3071)
    assert not can_hold(v3071, ColumnShape("text"))
    assert can_hold(ColumnShape("bigint"), ColumnShape("integer"))
    assert not can_hold(ColumnShape("integer"), ColumnShape("bigint"))
    assert not can_hold(ColumnShape("bigint"), ColumnShape("numeric"))
    assert can_hold(ColumnShape("numeric"), ColumnShape("bigint"))
    # a value moved between the two is shifted to the session's time zone
    assert not can_hold(ColumnShape("timestamp"), ColumnShape("timestamptz"))
    assert not can_hold(ColumnShape("timestamptz"), ColumnShape("timestamp"))
