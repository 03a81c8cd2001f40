"""tcmerge's room leases for the HA room service (tcmerge_room_leases).

Revision ID: 0003_room_leases
Revises: 0002_tcmerge_jobs
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from tcmerge.schema.types import counter, jid, short_string

revision = "0003_room_leases"
down_revision = "0002_tcmerge_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if not context.is_offline_mode() and sa.inspect(op.get_bind()).has_table(
            "tcmerge_room_leases"):
        return  # created earlier by the room service
    op.create_table(
        "tcmerge_room_leases",
        sa.Column("room_jid", jid(), nullable=False),
        sa.Column("holder", short_string(255), nullable=True),
        sa.Column("fencing", counter(), nullable=False),
        sa.Column("acquired_at", sa.TIMESTAMP(), nullable=True),
        sa.PrimaryKeyConstraint("room_jid", name="tcmerge_room_leases_pkey"),
    )
    op.create_index("tcmerge_room_leases_holder", "tcmerge_room_leases", ["holder"])


def downgrade() -> None:
    op.drop_index("tcmerge_room_leases_holder", table_name="tcmerge_room_leases")
    op.drop_table("tcmerge_room_leases")
