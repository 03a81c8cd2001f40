"""tcmerge's merge lock table (tcmerge_merge_lock), used by Oracle merges.

Revision ID: 0004_merge_lock
Revises: 0003_room_leases
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from tcmerge.schema.types import short_string

revision = "0004_merge_lock"
down_revision = "0003_room_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if not context.is_offline_mode() and sa.inspect(op.get_bind()).has_table(
            "tcmerge_merge_lock"):
        return  # created earlier by an Oracle merge
    op.create_table("tcmerge_merge_lock", sa.Column("name", short_string(30), nullable=True))


def downgrade() -> None:
    op.drop_table("tcmerge_merge_lock")
