"""The merge as a SQL script, for change control: ``tcmerge run --sql`` connects to nothing.

Each dialect whose merge is a plan of statements built before anything runs renders it
(``RENDERERS``, an explicit table). Passwords never appear in a script: where a
statement needs one, it reads a bind variable the script names, and a comment says
whose password to put there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tcmerge.errors import ConfigError
from tcmerge.merge import jobs
from tcmerge.request import MergeRequest


@dataclass
class MergeScript:
    dialect: str
    sql: str

    @property
    def ok(self) -> bool:
        return True

    def as_dict(self) -> dict[str, Any]:
        return {"ok": True, "dialect": self.dialect, "sql": self.sql}


def _oracle(request: MergeRequest) -> str:
    from tcmerge.merge import oracle as ora
    from tcmerge.merge.oracle_merge import OraclePlan, render_script

    # a private link: what a user with CREATE DATABASE LINK makes (validate tells whether
    # the target's user has it; a public one needs CREATE/DROP PUBLIC DATABASE LINK)
    plan = OraclePlan(request, ora.job_token(jobs.new_job_id()), "private",
                      snapshot=request.snapshot, mirrors=request.sources_named_as_target())
    return render_script(plan)


def _postgresql(request: MergeRequest) -> str:
    from tcmerge.merge import oracle as ora
    from tcmerge.merge.psql_script import render

    return render(request, ora.job_token(jobs.new_job_id()))


#: dialect -> the function that renders its merge; a dialect absent here has no script
RENDERERS: dict[str, Callable[[MergeRequest], str]] = {"oracle": _oracle,
                                                      "postgresql": _postgresql}


def merge_script(request: MergeRequest) -> MergeScript:
    """The whole merge of ``request`` as a SQL script for its dialect; connects to
    nothing. ConfigError (exit 2) for a dialect whose merge has no script."""
    dialect = request.check_dialects()
    render = RENDERERS.get(dialect)
    if render is None:
        raise ConfigError(
            f"run --sql is not available for {dialect} yet: its merge moves rows through "
            "tcmerge (binary COPY) and decides per room as it reads them, so it has no "
            "script made before it runs; use run --dry-run to see the exact counts")
    return MergeScript(dialect, render(request))
