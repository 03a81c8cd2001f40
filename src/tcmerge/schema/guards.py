"""Checks the migration revisions share (kept out of the revisions so they stay short)."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from alembic import context, op

from tcmerge.errors import ConfigError


def refuse_unless_empty(names: Iterable[str]) -> None:
    """Refuse a downgrade, before anything is dropped, when one of the tables holds rows.

    The TC tables may be IM&P's own, full of chat history; tcmerge_jobs holds the job
    history that restore needs. Offline (SQL output) there is nothing to look at.
    """
    if context.is_offline_mode():
        return
    bind = op.get_bind()
    for name in names:
        if bind.execute(sa.select(sa.literal(1)).select_from(sa.table(name)).limit(1)).first():
            raise ConfigError(f"refusing to drop table {name}: it holds rows; a downgrade "
                              "only removes empty tables")
