"""Alembic environment of tcmerge: creates the TC schema and tcmerge's own tables.

tcmerge drives it through ``tcmerge.schema.manage``; it passes either a live
connection (``config.attributes["connection"]``) or, offline, a dialect name
(``config.attributes["dialect"]``). Nothing here reads URLs or passwords.
"""

from __future__ import annotations

from alembic import context

from tcmerge.schema import bookkeeping, tc

VERSION_TABLE = "tcmerge_alembic_version"
config = context.config
target_metadata = [tc.metadata, bookkeeping.metadata]


def run_offline() -> None:
    context.configure(
        dialect_name=config.attributes["dialect"],
        target_metadata=target_metadata,
        literal_binds=True,
        version_table=VERSION_TABLE,
    )
    # SQLAlchemy 2.1 renders the version row's INSERT with RETURNING (on Oracle
    # "RETURNING ... INTO :ret_0", a bind variable no script declares); a script has
    # nothing to return it to
    context.get_context()._version.implicit_returning = False
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
