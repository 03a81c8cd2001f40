"""What a dialect does for the merge executor (``engine.MergeExecutor``).

The executor runs one sequence for every dialect: preflight, [ask], prepare (sessions,
locks, staging, the target's checksums and snapshot), analyse, refuse or apply, verify,
record, commit; on a failure roll back and record the failed job. A ``DialectMerge``
does each step for its database and returns plain data; it never calls the executor
(Alembic's ``DefaultImpl``/``OracleImpl`` are the model: the impl is chosen once, from
the URL, by the adapter's ``merge_impl``, and differences are class data plus a few
methods).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from tcmerge.merge.core import Analysis, duplicate_rows
from tcmerge.merge.plan import MergePlan
from tcmerge.request import MergeRequest
from tcmerge.results import Finding
from tcmerge.sqlexec import Runner

if TYPE_CHECKING:
    from tcmerge.merge.jobs import JobRecord
    from tcmerge.merge.transport import Progress
    from tcmerge.validate import ValidationReport


class Clock:
    """Seconds per phase of a run (``MergeResult.timings``); a phase named again adds up."""

    def __init__(self) -> None:
        self.start = self._mark = time.monotonic()
        self.timings: dict[str, float] = {}

    def phase(self, name: str) -> None:
        now = time.monotonic()
        self.timings[name] = self.timings.get(name, 0.0) + now - self._mark
        self._mark = now

    def restart(self) -> None:
        """Time spent since the last phase (the user answering a question) is nobody's."""
        self._mark = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start


@dataclass
class RunContext:
    """What a dialect's merge needs to know of the run it serves."""

    #: "run"; "validate" (stage, analyse, roll back); "preview": validate plus the inputs'
    #: checksums, what run shows at its question
    mode: str
    job_id: str
    progress: Progress | None = None
    clock: Clock = field(default_factory=Clock)
    #: the one-merge lock is held by run's lock session (tcmerge.lock)
    locked: bool = False
    dry_run: bool = False
    #: run compares the inputs with a preview shown at the question: checksums needed
    compares_with_shown: bool = False

    @property
    def recording(self) -> bool:
        """A run that leaves a job (not validate, a preview or a dry run)."""
        return self.mode == "run" and not self.dry_run

    def tell(self, what: str, where: str = "", rows: int = 0) -> None:
        if self.progress is not None:
            self.progress(what, where, rows)


@dataclass
class Prepared:
    """The target as the merge found it, before its first write."""

    #: per table the checksum (empty when nothing needs them)
    target_checksums: dict[str, str] = field(default_factory=dict)
    #: per table the snapshot table restore reads ({} without a snapshot)
    snapshot: dict[str, str] = field(default_factory=dict)
    #: everything else in the schema, for verify (None when not recorded)
    fingerprint: Any = None
    #: the tables not copied to the snapshot, whose rows restore finds by the merge's
    #: transaction id: ``{"xid": id, "tables": [...]}`` (None: every table copied)
    inserted_rows: dict[str, Any] | None = None


@dataclass
class Applied:
    """What apply wrote."""

    #: per table the rows the rules' inserts wrote
    written: dict[str, int]
    #: per table the rows already written while staging (copied straight in)
    written_while_staging: dict[str, int] = field(default_factory=dict)
    #: identity sequences raised above the merged ids
    sequences_raised: dict[str, Any] = field(default_factory=dict)


class DialectMerge(abc.ABC):
    """One merge on one dialect's databases; the executor calls its steps in order."""

    #: the question is asked before the merge transaction, after a preview that writes
    #: nothing (else inside the transaction, with its locks held: Oracle's staging DDL
    #: commits, so there is no preview that leaves the target as it was)
    asks_before_transaction: ClassVar[bool] = True
    #: the driver's error class (anything else unexpected is "interrupted or internal")
    driver_errors: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init__(self, request: MergeRequest, report: ValidationReport,
                 ctx: RunContext) -> None:
        self.request = request
        self.report = report
        self.ctx = ctx
        #: the sources that are the target itself: not read again (see target_mirrors)
        self.mirrors = target_mirrors(report)

    def data_not_checked(self) -> Finding | None:
        """Why validate cannot analyse the data on this dialect (None: it can)."""
        return None

    @abc.abstractmethod
    def plan(self) -> MergePlan:
        """The merge as data before anything connects (transport, inputs, tables); raises
        a TcmergeError when the merge cannot run at all."""

    @abc.abstractmethod
    def open(self) -> None:
        """The sessions on the target (CONNECTION_FAILED when it cannot be reached)."""

    @abc.abstractmethod
    def prepare(self, plan: MergePlan) -> Prepared:
        """Sessions, locks, staging; the target's checksums, snapshot and fingerprint."""

    @abc.abstractmethod
    def analyse(self) -> Analysis:
        """The rules' analysis of what is staged (counts and findings)."""

    @abc.abstractmethod
    def source_checksums(self) -> list[dict[str, str]]:
        """Per source, in order, the checksums of exactly what was staged."""

    @abc.abstractmethod
    def apply(self, analysis: Analysis) -> Applied:
        """The rules' inserts and updates."""

    @abc.abstractmethod
    def sources_unchanged(self, before: list[dict[str, str]]) -> list[Finding]:
        """Verification's proof that no source changed while it was merged."""

    @property
    @abc.abstractmethod
    def runner(self) -> Runner:
        """The merge transaction's session, for the shared verification and job record."""

    @abc.abstractmethod
    def commit(self) -> None: ...

    @abc.abstractmethod
    def rollback(self) -> None:
        """Roll the merge transaction back (quietly when the session is gone)."""

    @abc.abstractmethod
    def record_failure(self, job: JobRecord) -> bool:
        """The failed job, in a transaction of its own; False when it could not be."""

    @abc.abstractmethod
    def describe_error(self, exc: BaseException) -> str:
        """A driver error's message, without secrets."""

    @abc.abstractmethod
    def close(self, *, succeeded: bool) -> None:
        """Drop what the run made (also after a failure), end every session."""


#: how the executor makes a dialect's merge (tests give their own connections)
MergeFactory = Callable[[MergeRequest, "ValidationReport", RunContext], DialectMerge]


def target_mirrors(report: ValidationReport) -> frozenset[int]:
    """The sources (1-based) that are the target database itself (TARGET_IS_SOURCE, as
    Cisco's procedure names DB2 in "merge DB1 into DB2"). Every row of such a source is a
    row the target holds: a duplicate of input 0 whatever the other inputs hold, and it
    changes no owner, counter or verdict. The merge therefore does not read it again: its
    counts are the target's rows, each a duplicate (``count_mirrors``), its checksums the
    target's before the merge, and the job marks it (``verify`` checks it as the target,
    not as a source that must not change)."""
    return frozenset(i for i, record in enumerate(report.databases[1:], 1)
                     if record.get("same_as") == "target")


def count_mirrors(analysis: Analysis, mirrors: frozenset[int]) -> None:
    """The counts and findings a source that is the target would have had, read: each
    table's rows of the target, all duplicates (DUPLICATE_ROWS as the analysis says it)."""
    if not mirrors:
        return
    for name, c in analysis.counts.items():
        for k in mirrors:
            c.read[k] = c.read[0]
            c.duplicates += c.read[0]
        if c.read[0]:
            analysis.findings[:] = [f for f in analysis.findings if not (
                f.code == "DUPLICATE_ROWS" and f.table == name)]
            analysis.findings.append(duplicate_rows(name, c.duplicates))
