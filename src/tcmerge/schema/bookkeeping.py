"""tcmerge's own tables, kept apart from the TC tables (their own MetaData).

They live in the target database: the job history of every merge.
"""

from __future__ import annotations

import sqlalchemy as sa

from tcmerge.schema.types import counter, jid, long_text, short_string

metadata = sa.MetaData()

JOB_STATUSES = ("running", "succeeded", "failed", "restored")

tcmerge_jobs = sa.Table(
    "tcmerge_jobs",
    metadata,
    sa.Column("job_id", short_string(36), nullable=False),
    sa.Column("status", short_string(16), nullable=False),
    sa.Column("started_at", sa.TIMESTAMP(), nullable=False),
    sa.Column("finished_at", sa.TIMESTAMP(), nullable=True),
    sa.Column("tcmerge_version", short_string(32), nullable=False),
    # JSON documents as text: portable between PostgreSQL and Oracle. No passwords.
    sa.Column("inputs", long_text(), nullable=False),
    sa.Column("options", long_text(), nullable=False),
    sa.Column("counts", long_text(), nullable=True),
    sa.Column("error", long_text(), nullable=True),
    sa.PrimaryKeyConstraint("job_id", name="tcmerge_jobs_pkey"),
    sa.CheckConstraint(
        "status IN (" + ", ".join(repr(s) for s in JOB_STATUSES) + ")",
        name="tcmerge_jobs_status_check",
    ),
)

# Room leases of the HA room service (tcmerge.ha.rooms): at most one node hosts a room
# (room_jid is the key); every takeover raises ``fencing``, so a node that lost its
# lease cannot write. A released lease keeps its row (holder NULL) and its fencing
# number, which therefore never goes back.
tcmerge_room_leases = sa.Table(
    "tcmerge_room_leases",
    metadata,
    sa.Column("room_jid", jid(), nullable=False),
    sa.Column("holder", short_string(255), nullable=True),
    sa.Column("fencing", counter(), nullable=False),
    sa.Column("acquired_at", sa.TIMESTAMP(), nullable=True),
    sa.PrimaryKeyConstraint("room_jid", name="tcmerge_room_leases_pkey"),
    sa.Index("tcmerge_room_leases_holder", "holder"),
)

# The merge lock of Oracle targets: a merge holds LOCK TABLE ... IN EXCLUSIVE MODE on it
# in a session of its own for the whole run (Oracle DDL commits, so the lock cannot be
# a transaction lock of the merge session). No rows; PostgreSQL uses an advisory lock.
tcmerge_merge_lock = sa.Table(
    "tcmerge_merge_lock",
    metadata,
    sa.Column("name", short_string(30), nullable=True),
)
