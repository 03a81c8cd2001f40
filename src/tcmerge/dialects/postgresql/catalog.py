"""PostgreSQL catalog views tcmerge reads, as Core tables (queries are built with select())."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

pg_stat_activity = sa.table(
    "pg_stat_activity",
    sa.column("datname", sa.Text),
    sa.column("pid", sa.Integer),
    sa.column("usename", sa.Text),
    sa.column("application_name", sa.Text),
    sa.column("client_addr", pg.INET),
    sa.column("client_hostname", sa.Text),
    sa.column("state", sa.Text),
    sa.column("backend_type", sa.Text),
    schema="pg_catalog",
)

pg_hba_file_rules = sa.table(
    "pg_hba_file_rules",
    sa.column("line_number", sa.Integer),
    sa.column("type", sa.Text),
    sa.column("database", pg.ARRAY(sa.Text)),
    sa.column("user_name", pg.ARRAY(sa.Text)),
    sa.column("address", sa.Text),
    sa.column("netmask", sa.Text),
    sa.column("auth_method", sa.Text),
    sa.column("error", sa.Text),
    schema="pg_catalog",
)

pg_extension = sa.table(
    "pg_extension",
    sa.column("oid", sa.Integer),
    sa.column("extname", sa.Text),
    sa.column("extnamespace", sa.Integer),
    sa.column("extversion", sa.Text),
    schema="pg_catalog",
)

pg_available_extension_versions = sa.table(
    "pg_available_extension_versions",
    sa.column("name", sa.Text),
    sa.column("version", sa.Text),
    sa.column("superuser", sa.Boolean),
    sa.column("trusted", sa.Boolean),
    schema="pg_catalog",
)

pg_namespace = sa.table(
    "pg_namespace",
    sa.column("oid", sa.Integer),
    sa.column("nspname", sa.Text),
    schema="pg_catalog",
)

pg_database = sa.table(
    "pg_database",
    sa.column("oid", sa.Integer),
    sa.column("datname", sa.Text),
    sa.column("encoding", sa.Integer),
    schema="pg_catalog",
)

pg_roles = sa.table(
    "pg_roles",
    sa.column("oid", sa.Integer),
    sa.column("rolname", sa.Text),
    sa.column("rolsuper", sa.Boolean),
    sa.column("rolcreatedb", sa.Boolean),
    schema="pg_catalog",
)
