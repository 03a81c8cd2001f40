"""The library's front door: the operations the CLI offers, as functions that return results.

Each composes the pieces that live in their own modules: validate = preflight
(``tcmerge.validate``) + the merge engine's data analysis; run = the merge engine
with the full preflight, then the topology update of the contract.
"""

from __future__ import annotations

from collections.abc import Callable
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
    "upgrade_schema",
    "validate",
    "verify_job",
]


def validate(request: MergeRequest) -> ValidationReport:
    """Preflight and data analysis; nothing is written anywhere."""
    return _preflight_and_data(request, data_checks=data_checks)


def run(request: MergeRequest, *, progress: Progress | None = None,
        confirm: Confirm | None = None,
        assign: Callable[[str, str, str], None] = assign_database) -> MergeResult:
    """Validate, merge in one transaction, verify; then assign the target in the topology.

    After a successful (not dry) run with ``--topology F --group G`` the merged
    target is assigned to both nodes of G in F (written atomically, the previous
    file kept as ``F.bak``). The target must be named by its topology name for that.
    """
    result = run_merge(request, progress=progress, confirm=confirm)
    if (result.ok and result.status == "succeeded" and request.topology is not None
            and request.group is not None):
        if request.target.name is None:
            result.topology_assignment = {
                "assigned": False, "group": request.group,
                "reason": "the target was given as a URL; name a database declared in the "
                          "topology to have it assigned to the group",
            }
        else:
            try:
                assign(request.topology, request.group, request.target.name)
            except (TcmergeError, OSError) as exc:
                # the merge is committed: say the file was not updated, do not fail the run
                reason = exc.message if isinstance(exc, TcmergeError) else str(exc)
                result.topology_assignment = {"assigned": False, "group": request.group,
                                              "reason": reason}
                result.findings.append(warning(
                    "TOPOLOGY_NOT_UPDATED",
                    f"the merge succeeded, but {request.topology} could not be updated: "
                    f"{reason}",
                    hint=f"assign database {request.target.name} to the nodes of group "
                         f"{request.group} by hand"))
            else:
                result.topology_assignment = {
                    "assigned": True, "group": request.group,
                    "database": request.target.name, "file": request.topology,
                    "backup": request.topology + ".bak",
                }
    return result
