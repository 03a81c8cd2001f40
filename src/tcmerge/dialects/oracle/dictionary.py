"""Oracle data dictionary views tcmerge reads, as Core tables."""

from __future__ import annotations

import sqlalchemy as sa

session_privs = sa.table("session_privs", sa.column("privilege", sa.String))
session_roles = sa.table("session_roles", sa.column("role", sa.String))

user_ts_quotas = sa.table(
    "user_ts_quotas",
    sa.column("tablespace_name", sa.String),
    sa.column("bytes", sa.Numeric),
    sa.column("max_bytes", sa.Numeric),
)

user_users = sa.table(
    "user_users",
    sa.column("username", sa.String),
    sa.column("default_tablespace", sa.String),
)

user_segments = sa.table(
    "user_segments",
    sa.column("segment_name", sa.String),
    sa.column("segment_type", sa.String),
    sa.column("bytes", sa.Numeric),
)

user_lobs = sa.table(
    "user_lobs",
    sa.column("table_name", sa.String),
    sa.column("segment_name", sa.String),
)

user_db_links = sa.table("user_db_links", sa.column("db_link", sa.String))

nls_database_parameters = sa.table(
    "nls_database_parameters",
    sa.column("parameter", sa.String),
    sa.column("value", sa.String),
)

product_component_version = sa.table(
    "product_component_version",
    sa.column("product", sa.String),
    sa.column("version", sa.String),
)

v_session = sa.table(
    "v$session",
    sa.column("sid", sa.Integer),
    sa.column("username", sa.String),
    sa.column("schemaname", sa.String),
    sa.column("program", sa.String),
    sa.column("machine", sa.String),
    sa.column("status", sa.String),
    sa.column("type", sa.String),
    sa.column("audsid", sa.Integer),
)

#: triggers of the session's schema (IM and Presence creates some on Oracle)
user_triggers = sa.table(
    "user_triggers",
    sa.column("trigger_name", sa.String),
    sa.column("trigger_type", sa.String),
    sa.column("triggering_event", sa.String),
    sa.column("table_name", sa.String),
    sa.column("base_object_type", sa.String),
    sa.column("status", sa.String),
)

#: identity columns (Oracle 12c and later)
user_tab_identity_cols = sa.table(
    "user_tab_identity_cols",
    sa.column("table_name", sa.String),
    sa.column("column_name", sa.String),
    sa.column("generation_type", sa.String),
    sa.column("sequence_name", sa.String),
)
