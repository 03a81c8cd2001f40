"""aft_log.file_type NOT NULL, as Cisco's table chapter documents it.

Revision 0001 created aft_log with a nullable file_type (a guess made before Cisco's
chapter was read again). This revision sets NOT NULL, but only on an aft_log that
tcmerge made: IM and Presence creates the table itself, and nothing tcmerge did not
create is altered. 0001 left no mark, so "made by tcmerge" is decided by shape: exactly
the columns 0001 creates (names in order, types, nullability) and its key on aft_index.
An aft_log of any other shape, or whose file_type is NOT NULL already, is left as it is
(``tcmerge schema check`` reports a nullable file_type as SCHEMA_NULLABILITY_MISMATCH).

Rows whose file_type is NULL are not given an invented value: the upgrade is refused,
naming how many rows, before anything is altered.

The altered column gets a comment (``MARK``): the downgrade makes file_type nullable
again only where this revision set it NOT NULL, never on a table IM&P made NOT NULL.
Offline (``tcmerge schema sql``) the statements are printed without these checks.

Revision ID: 0005_aft_log_file_type
Revises: 0004_merge_lock
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from tcmerge.errors import ConfigError
from tcmerge.schema.compare import reflect, shape_of
from tcmerge.schema.types import counter, jid, short_string, timestamp

revision = "0005_aft_log_file_type"
down_revision = "0004_merge_lock"
branch_labels = None
depends_on = None

MARK = "NOT NULL set by tcmerge revision 0005_aft_log_file_type"

#: aft_log as revision 0001 creates it
_AFT_LOG_0001 = sa.Table(
    "aft_log", sa.MetaData(),
    sa.Column("aft_index", counter(), nullable=False),
    sa.Column("jid", jid(), nullable=False),
    sa.Column("to_jid", jid(), nullable=False),
    sa.Column("method", short_string(63), nullable=False),
    sa.Column("filename", short_string(511), nullable=False),
    sa.Column("real_filename", short_string(511), nullable=False),
    sa.Column("file_type", short_string(10), nullable=True),
    sa.Column("chat_type", short_string(10), nullable=False),
    sa.Column("file_server", short_string(511), nullable=False),
    sa.Column("file_path", short_string(511), nullable=False),
    sa.Column("file_size", counter(), nullable=False),
    sa.Column("bytes_transferred", counter(), nullable=False),
    sa.Column("timestampvalue", timestamp(), nullable=False),
)


def made_by_0001(bind: sa.Connection) -> bool:
    """True when the live aft_log has exactly the shape revision 0001 gives it."""
    live = reflect(bind, [_AFT_LOG_0001]).get("aft_log")
    if live is None:
        return False
    expected = [(c.name, shape_of(c.type), c.nullable) for c in _AFT_LOG_0001.columns]
    found = [(c.name, c.shape, c.nullable) for c in live.columns.values()]
    return found == expected and live.primary_key == ("aft_index",)


def _file_type_comment(bind: sa.Connection) -> str | None:
    for column in sa.inspect(bind).get_columns("aft_log"):
        if str(column["name"]).lower() == "file_type":
            comment = column.get("comment")
            return None if comment is None else str(comment)
    return None


def upgrade() -> None:
    if not context.is_offline_mode():
        bind = op.get_bind()
        if not made_by_0001(bind):
            return  # IM&P's table, or NOT NULL already: left as it is
        nulls = bind.execute(sa.text("SELECT count(*) FROM aft_log WHERE file_type IS NULL")
                             ).scalar()
        if nulls:
            raise ConfigError(
                f"aft_log holds {nulls} row(s) whose file_type is NULL; Cisco documents "
                "file_type NOT NULL and tcmerge does not invent file types: set file_type "
                "in those rows (for example from the extension of real_filename), then run "
                "the upgrade again; revision 0005_aft_log_file_type was not applied")
    op.alter_column("aft_log", "file_type", existing_type=short_string(10),
                    existing_nullable=True, nullable=False, comment=MARK)


def downgrade() -> None:
    if not context.is_offline_mode() and _file_type_comment(op.get_bind()) != MARK:
        return  # not set NOT NULL by this revision: left as it is
    op.alter_column("aft_log", "file_type", existing_type=short_string(10),
                    existing_nullable=False, nullable=True, existing_comment=MARK,
                    comment=None)
