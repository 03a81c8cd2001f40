"""The Text Conference schema: tc_rooms, tc_users, tc_messages, tc_msgarchive, tc_timelog,
jm, aft_log.

IM and Presence creates these tables itself when a database is assigned to a
node, so online the revision creates only the tables that are absent and
leaves existing ones (and their data) alone. Offline it emits every CREATE.

Revision ID: 0001_tc_schema
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from tcmerge.schema.guards import refuse_unless_empty
from tcmerge.schema.types import counter, jid, long_text, short_string, timestamp

revision = "0001_tc_schema"
down_revision = None
branch_labels = None
depends_on = None

ROLES = "'none', 'hidden', 'visitor', 'participant', 'moderator'"
AFFILIATIONS = "'none', 'outcast', 'member', 'admin', 'owner'"


def _existing() -> set[str]:
    if context.is_offline_mode():
        return set()
    return set(sa.inspect(op.get_bind()).get_table_names())


def _archive_columns() -> list[sa.Column[object]]:
    """The message columns tc_msgarchive and jm share."""
    return [
        sa.Column("body_len", sa.Integer(), nullable=False),
        sa.Column("message_len", sa.Integer(), nullable=False),
        sa.Column("body_string", short_string(4000), nullable=True),
        sa.Column("message_string", short_string(4000), nullable=True),
        sa.Column("body_text", long_text(), nullable=True),
        sa.Column("message_text", long_text(), nullable=True),
    ]


def upgrade() -> None:
    existing = _existing()
    if "tc_rooms" not in existing:
        op.create_table(
            "tc_rooms",
            sa.Column("room_jid", jid(), nullable=False),
            sa.Column("creator_jid", jid(), nullable=False),
            sa.Column("subject", short_string(255), nullable=False),
            sa.Column("type", short_string(32), nullable=False),
            sa.Column("config", long_text(), nullable=False),
            sa.Column("spacket", long_text(), nullable=False),
            sa.Column("start_msg_id", counter(), nullable=False),
            sa.Column("next_msg_id", counter(), nullable=False),
            sa.PrimaryKeyConstraint("room_jid", name="tc_rooms_pkey"),
            sa.CheckConstraint("type IN ('ad-hoc', 'persistent')", name="check_type"),
        )
    if "tc_users" not in existing:
        op.create_table(
            "tc_users",
            sa.Column("room_jid", jid(), nullable=False),
            sa.Column("real_jid", jid(), nullable=False),
            sa.Column("role", short_string(32), nullable=False),
            sa.Column("affiliation", short_string(32), nullable=False),
            sa.Column("nick_jid", jid(), nullable=False),
            sa.Column("reason", short_string(255), nullable=True),
            sa.Column("initiator_jid", jid(), nullable=True),
            sa.PrimaryKeyConstraint("room_jid", "real_jid", name="tc_users_pkey"),
            sa.CheckConstraint(f"role IN ({ROLES})", name="check_role"),
            sa.CheckConstraint(f"affiliation IN ({AFFILIATIONS})", name="check_affiliation"),
        )
    if "tc_messages" not in existing:
        op.create_table(
            "tc_messages",
            sa.Column("msg_id", counter(), nullable=False),
            sa.Column("room_jid", jid(), nullable=False),
            sa.Column("stamp", timestamp(), nullable=False),
            sa.Column("msg", long_text(), nullable=False),
            sa.PrimaryKeyConstraint("room_jid", "msg_id", name="tc_messages_pkey"),
        )
    if "tc_msgarchive" not in existing:
        op.create_table(
            "tc_msgarchive",
            sa.Column("msg_id", counter(), nullable=False),
            sa.Column("to_jid", jid(), nullable=False),
            sa.Column("from_jid", jid(), nullable=False),
            sa.Column("nick_jid", jid(), nullable=False),
            sa.Column("sent_date", timestamp(), nullable=False),
            sa.Column("msg_type", sa.CHAR(1), nullable=False),
            *_archive_columns(),
            sa.Column("subject", short_string(255), nullable=True),
            sa.PrimaryKeyConstraint("to_jid", "msg_id", name="tc_msgarchive_pkey"),
        )
    if "tc_timelog" not in existing:
        op.create_table(
            "tc_timelog",
            sa.Column("real_jid", jid(), nullable=False),
            sa.Column("room_jid", jid(), nullable=False),
            sa.Column("start", timestamp(), nullable=False, quote=True),
            sa.Column("end", timestamp(), nullable=True, quote=True),
        )
    if "jm" not in existing:
        op.create_table(
            "jm",
            sa.Column("to_jid", jid(), nullable=False),
            sa.Column("from_jid", jid(), nullable=False),
            sa.Column("sent_date", timestamp(), nullable=False),
            sa.Column("subject", short_string(255), nullable=True),
            sa.Column("thread_id", short_string(255), nullable=True),
            sa.Column("msg_type", sa.CHAR(1), nullable=False),
            sa.Column("direction", sa.CHAR(1), nullable=False),
            *_archive_columns(),
            sa.Column("history_flag", sa.CHAR(1), nullable=True),
        )
    if "aft_log" not in existing:
        op.create_table(
            "aft_log",
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
            sa.PrimaryKeyConstraint("aft_index", name="aft_log_pkey"),
        )


def downgrade() -> None:
    # The TC tables may be IM&P's, full of chat history: only empty ones are dropped.
    names = ("aft_log", "jm", "tc_timelog", "tc_msgarchive", "tc_messages", "tc_users",
             "tc_rooms")
    refuse_unless_empty(names)
    for name in names:
        op.drop_table(name)

