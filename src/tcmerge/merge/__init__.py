"""The transactional merge: one executor for every dialect (``engine``), the dialect's
steps (``pg_merge``, ``oracle_merge``), the rules written once for both (``core``)."""

from __future__ import annotations

from tcmerge.merge.engine import (
    MergeFailed,
    analyse_merge,
    data_checks,
    full_preflight,
    run_merge,
)
from tcmerge.merge.plan import MergePlan, MergeResult, TableCounts
from tcmerge.merge.snapshot import RestoreResult, restore_job
from tcmerge.merge.verify import VerifyReport, verify_job

__all__ = [
    "MergeFailed",
    "MergePlan",
    "MergeResult",
    "RestoreResult",
    "TableCounts",
    "VerifyReport",
    "analyse_merge",
    "data_checks",
    "full_preflight",
    "restore_job",
    "run_merge",
    "verify_job",
]
