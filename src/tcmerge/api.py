"""The library's front door: the operations the CLI offers, as functions that return results.

Each composes the pieces that live in their own modules: validate = preflight
(``tcmerge.validate``) + the merge engine's data analysis; run = the merge engine
with the full preflight, then the topology update of the contract.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tcmerge.errors import TcmergeError
from tcmerge.merge import (
    MergeResult,
    RestoreResult,
    VerifyReport,
    data_checks,
    restore_job,
    run_merge,
    verify_job,
)
from tcmerge.merge.engine import Confirm
from tcmerge.merge.script import MergeScript, merge_script
from tcmerge.merge.transport import Progress
from tcmerge.request import MergeRequest, build_request
from tcmerge.results import warning
from tcmerge.topology import assign_database, check_topology, load_topology
from tcmerge.validate import ValidationReport
from tcmerge.validate import validate as _preflight_and_data

if TYPE_CHECKING:
    from tcmerge.schema.manage import check as check_schema
    from tcmerge.schema.manage import offline_sql
    from tcmerge.schema.manage import upgrade as upgrade_schema

log = logging.getLogger(__name__)

#: api names of the schema functions (tcmerge.schema.manage), loaded on first use:
#: Alembic is a fifth of a merge command's start-up and a merge does not need it
_SCHEMA_FUNCTIONS = {"check_schema": "check", "offline_sql": "offline_sql",
                     "upgrade_schema": "upgrade"}


def __getattr__(name: str) -> Any:
    if name in _SCHEMA_FUNCTIONS:
        from tcmerge.schema import manage

        return getattr(manage, _SCHEMA_FUNCTIONS[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "MergeRequest",
    "RestoreResult",
    "VerifyReport",
    "build_request",
    "check_schema",
    "check_topology",
    "load_topology",
    "offline_sql",
    "restore_job",
    "run",
    "run_sql",
    "upgrade_schema",
    "validate",
    "verify_job",
]


def run_sql(request: MergeRequest) -> MergeScript:
    """The whole merge as a SQL script for the inputs' dialect; connects to nothing."""
    return merge_script(request)


def validate(request: MergeRequest) -> ValidationReport:
    """Preflight and data analysis; nothing is written anywhere."""
    return _preflight_and_data(request, data_checks=data_checks)


def _assign_target(request: MergeRequest, result: MergeResult,
                   assign: Callable[[str, str, str], Path]) -> None:
    """After a committed merge: the target assigned to the group's nodes in the topology
    (a target given as a URL by the declared database at the same place). Problems are
    findings of ``result.after_commit``: the merge stands."""
    assert request.topology is not None and request.group is not None
    name = request.target.name
    reason = None
    if name is None:
        try:
            name = load_topology(request.topology).declared_name(request.target)
        except TcmergeError as exc:
            reason = exc.message
        if name is None and reason is None:
            reason = ("the target URL matches no single database declared in the topology "
                      "(by type, host, port and database)")
    if name is not None:
        try:
            backup = assign(request.topology, request.group, name)
        except (TcmergeError, OSError) as exc:
            reason = exc.message if isinstance(exc, TcmergeError) else str(exc)
        else:
            result.topology_assignment = {
                "assigned": True, "group": request.group, "database": name,
                "file": request.topology, "backup": str(backup)}
            return
    result.topology_assignment = {"assigned": False, "group": request.group,
                                  "reason": reason}
    result.after_commit.append(warning(
        "TOPOLOGY_NOT_UPDATED",
        f"the merge succeeded, but {request.topology} was not updated: {reason}",
        hint=f"assign the merged database to the nodes of group {request.group} by hand"))


def _logged(progress: Progress | None) -> Progress | None:
    """``progress``, and each new phase of the merge (what, where) logged once (-v)."""
    if not log.isEnabledFor(logging.INFO):
        return progress
    seen: set[tuple[str, str]] = set()

    def tell(what: str, where: str, rows: int) -> None:
        if (what, where) not in seen:
            seen.add((what, where))
            log.info("merge: %s%s", what, f" ({where})" if where else "")
        if progress is not None:
            progress(what, where, rows)

    return tell


def run(request: MergeRequest, *, progress: Progress | None = None,
        confirm: Confirm | None = None,
        assign: Callable[[str, str, str], Path] = assign_database) -> MergeResult:
    """Validate, merge in one transaction, verify; then assign the target in the topology.

    After a successful (not dry) run with ``--topology F --group G`` the merged
    target is assigned to both nodes of G in F (written atomically, the previous
    file kept as ``F.bak``, or ``F.bak.N`` when that exists: a backup never replaces a
    file; ``topology_assignment["backup"]`` names it). A target given as a URL is
    assigned by the name of the declared database at the same place; when there is
    none, a TOPOLOGY_NOT_UPDATED warning says so (after the commit: it does not make the run fail).
    """
    log.info("merging into %s from %s", request.target.label,
             ", ".join(ref.label for ref in request.sources))
    result = run_merge(request, progress=_logged(progress), confirm=confirm)
    log.info("merge %s%s", result.status, f", job {result.job_id}" if result.job_id else "")
    if (result.ok and result.status == "succeeded" and request.topology is not None
            and request.group is not None):
        _assign_target(request, result, assign)
    return result
