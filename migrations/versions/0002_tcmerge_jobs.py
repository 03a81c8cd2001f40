"""tcmerge's own job history table (tcmerge_jobs).

Revision ID: 0002_tcmerge_jobs
Revises: 0001_tc_schema
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from tcmerge.schema.guards import refuse_unless_empty
from tcmerge.schema.types import long_text, short_string

revision = "0002_tcmerge_jobs"
down_revision = "0001_tc_schema"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if not context.is_offline_mode() and sa.inspect(op.get_bind()).has_table("tcmerge_jobs"):
        return  # created earlier by a merge run
    op.create_table(
        "tcmerge_jobs",
        sa.Column("job_id", short_string(36), nullable=False),
        sa.Column("status", short_string(16), nullable=False),
        sa.Column("started_at", sa.TIMESTAMP(), nullable=False),
        sa.Column("finished_at", sa.TIMESTAMP(), nullable=True),
        sa.Column("tcmerge_version", short_string(32), nullable=False),
        sa.Column("inputs", long_text(), nullable=False),
        sa.Column("options", long_text(), nullable=False),
        sa.Column("counts", long_text(), nullable=True),
        sa.Column("error", long_text(), nullable=True),
        sa.PrimaryKeyConstraint("job_id", name="tcmerge_jobs_pkey"),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed', 'restored')",
            name="tcmerge_jobs_status_check",
        ),
    )


def downgrade() -> None:
    refuse_unless_empty(["tcmerge_jobs"])  # the job history restore needs
    op.drop_table("tcmerge_jobs")
