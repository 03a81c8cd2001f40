"""The TC external database tables as SQLAlchemy Core tables (see reference/tc-schema.md).

Text Conference: tc_rooms, tc_users, tc_messages, tc_msgarchive, tc_timelog.
Message archiving: jm. Managed file transfer: aft_log.
"""

from __future__ import annotations

import sqlalchemy as sa

from tcmerge.schema.types import counter, jid, long_text, short_string, timestamp

metadata = sa.MetaData()

ROOM_TYPES = ("ad-hoc", "persistent")
ROLES = ("none", "hidden", "visitor", "participant", "moderator")
AFFILIATIONS = ("none", "outcast", "member", "admin", "owner")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


tc_rooms = sa.Table(
    "tc_rooms",
    metadata,
    sa.Column("room_jid", jid(), nullable=False),
    sa.Column("creator_jid", jid(), nullable=False),
    sa.Column("subject", short_string(255), nullable=False),
    sa.Column("type", short_string(32), nullable=False),
    sa.Column("config", long_text(), nullable=False),
    sa.Column("spacket", long_text(), nullable=False),
    sa.Column("start_msg_id", counter(), nullable=False),
    sa.Column("next_msg_id", counter(), nullable=False),
    sa.PrimaryKeyConstraint("room_jid", name="tc_rooms_pkey"),
    sa.CheckConstraint(_in("type", ROOM_TYPES), name="check_type"),
)

tc_users = sa.Table(
    "tc_users",
    metadata,
    sa.Column("room_jid", jid(), nullable=False),
    sa.Column("real_jid", jid(), nullable=False),
    sa.Column("role", short_string(32), nullable=False),
    sa.Column("affiliation", short_string(32), nullable=False),
    sa.Column("nick_jid", jid(), nullable=False),
    sa.Column("reason", short_string(255), nullable=True),
    sa.Column("initiator_jid", jid(), nullable=True),
    sa.PrimaryKeyConstraint("room_jid", "real_jid", name="tc_users_pkey"),
    sa.CheckConstraint(_in("role", ROLES), name="check_role"),
    sa.CheckConstraint(_in("affiliation", AFFILIATIONS), name="check_affiliation"),
)

tc_messages = sa.Table(
    "tc_messages",
    metadata,
    sa.Column("msg_id", counter(), nullable=False),
    sa.Column("room_jid", jid(), nullable=False),
    sa.Column("stamp", timestamp(), nullable=False),
    sa.Column("msg", long_text(), nullable=False),
    sa.PrimaryKeyConstraint("room_jid", "msg_id", name="tc_messages_pkey"),
)

tc_msgarchive = sa.Table(
    "tc_msgarchive",
    metadata,
    sa.Column("msg_id", counter(), nullable=False),
    sa.Column("to_jid", jid(), nullable=False),
    sa.Column("from_jid", jid(), nullable=False),
    sa.Column("nick_jid", jid(), nullable=False),
    sa.Column("sent_date", timestamp(), nullable=False),
    sa.Column("msg_type", sa.CHAR(1), nullable=False),
    sa.Column("body_len", sa.Integer(), nullable=False),
    sa.Column("message_len", sa.Integer(), nullable=False),
    sa.Column("body_string", short_string(4000), nullable=True),
    sa.Column("message_string", short_string(4000), nullable=True),
    sa.Column("body_text", long_text(), nullable=True),
    sa.Column("message_text", long_text(), nullable=True),
    sa.Column("subject", short_string(255), nullable=True),
    sa.PrimaryKeyConstraint("to_jid", "msg_id", name="tc_msgarchive_pkey"),
)

# "start" and "end" are reserved words on some servers: always quoted.
tc_timelog = sa.Table(
    "tc_timelog",
    metadata,
    sa.Column("real_jid", jid(), nullable=False),
    sa.Column("room_jid", jid(), nullable=False),
    sa.Column("start", timestamp(), nullable=False, quote=True),
    sa.Column("end", timestamp(), nullable=True, quote=True),
)

jm = sa.Table(
    "jm",
    metadata,
    sa.Column("to_jid", jid(), nullable=False),
    sa.Column("from_jid", jid(), nullable=False),
    sa.Column("sent_date", timestamp(), nullable=False),
    sa.Column("subject", short_string(255), nullable=True),
    sa.Column("thread_id", short_string(255), nullable=True),
    sa.Column("msg_type", sa.CHAR(1), nullable=False),
    sa.Column("direction", sa.CHAR(1), nullable=False),
    sa.Column("body_len", sa.Integer(), nullable=False),
    sa.Column("message_len", sa.Integer(), nullable=False),
    sa.Column("body_string", short_string(4000), nullable=True),
    sa.Column("message_string", short_string(4000), nullable=True),
    sa.Column("body_text", long_text(), nullable=True),
    sa.Column("message_text", long_text(), nullable=True),
    sa.Column("history_flag", sa.CHAR(1), nullable=True),
)

aft_log = sa.Table(
    "aft_log",
    metadata,
    sa.Column("aft_index", counter(), nullable=False),
    sa.Column("jid", jid(), nullable=False),
    sa.Column("to_jid", jid(), nullable=False),
    sa.Column("method", short_string(63), nullable=False),
    sa.Column("filename", short_string(511), nullable=False),
    sa.Column("real_filename", short_string(511), nullable=False),
    # NOT NULL as Cisco's table chapter states (revision 0005; 0001 made it nullable)
    sa.Column("file_type", short_string(10), nullable=False),
    sa.Column("chat_type", short_string(10), nullable=False),
    sa.Column("file_server", short_string(511), nullable=False),
    sa.Column("file_path", short_string(511), nullable=False),
    sa.Column("file_size", counter(), nullable=False),
    sa.Column("bytes_transferred", counter(), nullable=False),
    sa.Column("timestampvalue", timestamp(), nullable=False),
    sa.PrimaryKeyConstraint("aft_index", name="aft_log_pkey"),
)

#: Feature table sets, as in ``--tables tc,ma,mft``.
TABLE_SETS: dict[str, tuple[sa.Table, ...]] = {
    "tc": (tc_rooms, tc_users, tc_messages, tc_msgarchive, tc_timelog),
    "ma": (jm,),
    "mft": (aft_log,),
}
TC_TABLES = TABLE_SETS["tc"]
ALL_TABLES = (*TC_TABLES, jm, aft_log)


def tables_for(selection: str | None) -> tuple[sa.Table, ...]:
    """Tables for a ``--tables`` value such as ``tc`` or ``tc,ma,mft`` (order kept, no repeats)."""
    from tcmerge.errors import ConfigError

    # None is the default; "" is a selection of nothing, as "," is
    names = [part.strip().lower() for part in ("tc" if selection is None else selection)
             .split(",") if part.strip()]
    chosen: list[sa.Table] = []
    for name in names:
        if name not in TABLE_SETS:
            raise ConfigError(
                f"unknown feature table set {name!r}; choose from {', '.join(TABLE_SETS)}"
            )
        chosen.extend(t for t in TABLE_SETS[name] if t not in chosen)
    if not chosen:
        raise ConfigError("--tables selects no table")
    return tuple(chosen)
