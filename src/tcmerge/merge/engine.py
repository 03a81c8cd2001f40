"""The merge executor, one for every dialect: lock, preflight, then stage → analyse →
(refuse | [ask] → apply → verify → record). What a dialect does at each step is its
``DialectMerge`` (``dialect_merge.py``; PostgreSQL: ``pg_merge.py``, Oracle:
``oracle_merge.py``), chosen once from the target's URL.

``run_merge`` and ``analyse_merge`` are the library entry points (the CLI and the
demo call them). Both take the preflight as an injectable callable (the default,
``full_preflight``, is validate's preflight); the transport comes from
``choose_transport`` (default: the requested one, else ``copy``).

run holds the target's one-merge lock from its first statement (``tcmerge.lock``):
a second run or validate is refused at once with MERGE_IN_PROGRESS. With a question
to ask (``confirm``), the whole analysis first runs in a transaction that writes
nothing and ends; the question is asked with nothing held but that lock; the merge
then runs and applies only if every input is still what was shown (INPUTS_CHANGED).

One transaction on the target holds every table change, the snapshot and the job
record. On failure the transaction rolls back (staging tables are TEMP, dblink
connections die with the session) and the failed job is recorded in a separate
transaction.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from tcmerge.dburl import DatabaseRef, public_url
from tcmerge.dialects import adapter_class
from tcmerge.errors import EXIT_FAILURE, DatabaseError, TcmergeError
from tcmerge.lock import target_lock
from tcmerge.merge import jobs
from tcmerge.merge.dialect_merge import DialectMerge, MergeFactory, RunContext
from tcmerge.merge.plan import MergePlan, MergeResult, TableCounts
from tcmerge.merge.snapshot import MergeInProgress
from tcmerge.merge.transport import Progress
from tcmerge.merge.verify import check_target
from tcmerge.request import MergeRequest
from tcmerge.results import Finding, blocking, error
from tcmerge.validate import ValidationReport, analysis_request, validate

Preflight = Callable[[MergeRequest], ValidationReport]
#: Asked after the analysis, before any change, with the exact counts; False cancels.
Confirm = Callable[[MergeResult], bool]


class MergeFailed(TcmergeError):
    """The merge failed while working; the target is unchanged (exit 3)."""

    code = "MERGE_FAILED"
    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, code: str | None = None,
                 job_id: str | None = None, findings: list[Finding] | None = None) -> None:
        super().__init__(message, code=code)
        self.job_id = job_id
        #: what validation found before the failure
        self.findings = list(findings or [])

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def full_preflight(request: MergeRequest) -> ValidationReport:
    """Every preflight check of ``tcmerge validate`` except the data analysis, under the
    one-merge lock run holds already.

    run does the data analysis itself, inside its own transaction, on the rows it
    stages (so the sources are read once).
    """
    return validate(request, locked=True)


def data_checks(request: MergeRequest, report: ValidationReport) -> list[Finding]:
    """validate's data part: stage every input, analyse conflicts, roll back.

    ``report`` is the preflight already made; it is not run again.
    """
    result = MergeExecutor(request, mode="validate", progress=None,
                    preflight=lambda _request: report).execute()
    return [f for f in result.findings if f not in report.findings]


def describe_inputs(request: MergeRequest,
                    mirrors: frozenset[int] = frozenset()) -> dict[str, Any]:
    """The job's inputs, without passwords; a source that is the target itself is
    marked ``is_target`` (``verify`` checks it as the target)."""
    def one(ref: DatabaseRef) -> dict[str, Any]:
        return {"label": ref.label, "name": ref.name, "url": public_url(ref)}

    # the same shape for every dialect; the dialect says which one the job merged
    return {"dialect": request.target.dialect, "target": one(request.target),
            "sources": [{**one(s), **({"is_target": True} if i in mirrors else {})}
                        for i, s in enumerate(request.sources, 1)]}


class MergeExecutor:
    """One merge, the same sequence for every dialect; the dialect's steps are a
    ``DialectMerge`` chosen once, from the target's URL (its adapter's ``merge_impl``)."""

    def __init__(self, request: MergeRequest, *, mode: str, progress: Progress | None,
                 preflight: Preflight, confirm: Confirm | None = None,
                 dialect_merge: MergeFactory | None = None) -> None:
        self.request = request
        self.confirm = confirm
        self.preflight = preflight
        self.make_dialect_merge = dialect_merge
        self.ctx = RunContext(mode=mode, job_id=jobs.new_job_id(), progress=progress,
                              dry_run=request.dry_run)
        self.started = jobs.utcnow()
        #: the preview the user said yes to: the merge applies only exactly that
        self.shown: MergeExecutor | None = None
        #: checksums of the inputs as the analysis saw them (preview and run)
        self.target_sums: dict[str, str] = {}
        self.source_sums: list[dict[str, str]] = []
        self.counts: dict[str, TableCounts] = {}

    @property
    def mode(self) -> str:
        return self.ctx.mode

    @property
    def job_id(self) -> str:
        return self.ctx.job_id

    def _result(self, status: str, findings: list[Finding], plan: MergePlan | None,
                **kw: Any) -> MergeResult:
        return MergeResult(status=status, findings=findings, plan=plan,
                           strict=self.request.strict, elapsed=self.ctx.clock.elapsed,
                           timings=dict(self.ctx.clock.timings), **kw)

    def execute(self) -> MergeResult:
        request = self.request
        dialect = request.check_dialects()
        if self.mode != "run":
            return self._execute(dialect)
        # before anything else: a second run (or validate) is told at once, instead of
        # waiting on this one's table locks
        with target_lock(request.target, exclusive=True) as lock:
            if lock.refusal is not None:
                return self._result("refused", [lock.refusal], None)
            self.ctx.locked = lock.held
            return self._execute(dialect)

    def _dialect_merge(self, dialect: str, report: ValidationReport) -> DialectMerge:
        make = self.make_dialect_merge
        if make is None:
            module, name = adapter_class(dialect).merge_impl.split(":")
            make = getattr(importlib.import_module(module), name)
        return make(self.request, report, self.ctx)

    def _ask(self, report: ValidationReport, dialect: str) -> MergeResult | None:
        """Before the merge: the whole analysis in a transaction that writes nothing and
        ends, then the question, asked with no transaction open and no lock held but the
        one-merge lock. None when the answer is yes (the merge then applies only what was
        shown, see ``_changed_since_shown``); else the result to return."""
        assert self.confirm is not None
        # staged as validate stages: no password is handed to a server before the answer
        preview = MergeExecutor(analysis_request(self.request, report), mode="preview",
                                progress=self.ctx.progress, preflight=lambda _request: report,
                                dialect_merge=self.make_dialect_merge)
        # a failure or an interruption (a dropped terminal) before the question is this
        # run's: recorded as its failed job
        preview.ctx.locked, preview.ctx.job_id = self.ctx.locked, self.job_id
        preview.started = self.started
        result = preview._execute(dialect)
        self.ctx.clock.timings.update(
            {f"preview {k}": v for k, v in preview.ctx.clock.timings.items()})
        self.ctx.clock.restart()
        if result.status != "validated" or blocking(result.findings,
                                                    strict=self.request.strict):
            return self._result("refused", result.findings, result.plan)
        try:
            yes = self.confirm(result)
        except BaseException as exc:
            assert result.plan is not None
            self._record_failure(None, result.plan, f"{type(exc).__name__}: interrupted at "
                                 "the question, nothing was written")
            raise
        if not yes:
            return self._result("cancelled", result.findings, result.plan)
        self.shown, self.confirm = preview, None
        self.ctx.compares_with_shown = True
        return None

    def _execute(self, dialect: str) -> MergeResult:
        report = self.preflight(self.request)
        if report.merge_tables:
            # the inputs' live columns decide what moves (contract: the schema of a merge)
            self.request = replace(self.request, tables=tuple(report.merge_tables))
        request = self.request
        findings = list(report.findings)
        self.ctx.clock.phase("preflight")
        if blocking(findings, strict=request.strict):
            return self._result("refused", findings, None)
        impl = self._dialect_merge(dialect, report)
        if self.mode == "validate":
            skipped = impl.data_not_checked()
            if skipped is not None:
                return self._result("validated", [*findings, skipped], None)
        if (self.confirm is not None and not request.dry_run and self.mode == "run"
                and impl.asks_before_transaction):
            answer = self._ask(report, dialect)
            if answer is not None:
                return answer
        plan = impl.plan()
        succeeded = False
        try:
            impl.open()
            result = self._guarded(impl, plan, findings)
            succeeded = result.status == "succeeded"
            return result
        finally:
            impl.close(succeeded=succeeded)

    def _guarded(self, impl: DialectMerge, plan: MergePlan,
                 findings: list[Finding]) -> MergeResult:
        """The merge transaction; on a failure rolled back and the failed job recorded."""
        request = self.request
        try:
            return self._transaction(impl, plan, findings)
        except MergeInProgress as exc:
            impl.rollback()
            findings.append(error("MERGE_IN_PROGRESS", exc.message,
                                  database=request.target.label,
                                  hint="wait for it to finish (tcmerge jobs list shows "
                                       "the merges)"))
            return self._result("refused", findings, plan)
        except BaseException as exc:
            impl.rollback()
            if isinstance(exc, TcmergeError):
                message, code = exc.message, exc.code
            elif isinstance(exc, impl.driver_errors):
                message, code = impl.describe_error(exc), "MERGE_FAILED"
            else:  # interrupted, or a bug: still rolled back and recorded
                self._record_failure(impl, plan,
                                     f"{type(exc).__name__}: interrupted or internal error")
                raise
            recorded = self._record_failure(impl, plan, f"{code}: {message}")
            what = "validation" if self.mode == "validate" else "merge"
            raise MergeFailed(f"{what} aborted, the target is unchanged: {message}", code=code,
                              job_id=self.job_id if recorded else None,
                              findings=findings) from None

    def _changed_since_shown(self, plan: MergePlan) -> list[Finding]:
        """INPUTS_CHANGED when an input is not what the user saw at the question: the
        merge would not be the one shown. Compared: every input's checksums, taken in
        the snapshot each analysis read (the target's under its SHARE lock), and the
        counts shown."""
        shown = self.shown
        if shown is None:
            return []
        request = self.request
        changed: list[tuple[str, list[str]]] = []
        sums = [(request.target.label, shown.target_sums, self.target_sums)] + [
            (ref.label, was, now) for ref, was, now in zip(
                request.sources, shown.source_sums, self.source_sums, strict=True)]
        for label, was, now in sums:
            tables = sorted(t for t in was.keys() | now.keys() if was.get(t) != now.get(t))
            if tables:
                changed.append((label, tables))
        counts_shown = {n: c.as_dict() for n, c in shown.counts.items()}
        counts_now = {n: c.as_dict() for n, c in plan.counts.items()}
        if not changed and counts_shown == counts_now:
            return []
        what = "; ".join(f"{label}: {', '.join(tables)}" for label, tables in changed) or \
            "the counts differ"
        return [error(
            "INPUTS_CHANGED",
            f"the databases changed after the merge was shown for confirmation ({what}): "
            "it would not be the merge you said yes to; nothing was written",
            database=changed[0][0] if changed else request.target.label,
            hint="make sure nothing writes to the databases (stop the Text Conference "
                 "service), then run again",
            details={"changed": {label: tables for label, tables in changed}})]

    def _record_failure(self, impl: DialectMerge | None, plan: MergePlan,
                        error_text: str) -> bool:
        """The failed job, in a session of its own (the merge's was rolled back)."""
        if self.mode == "validate" or self.request.dry_run:
            return False
        request = self.request
        job = jobs.JobRecord(
            job_id=self.job_id, status="failed", started_at=self.started,
            finished_at=jobs.utcnow(), inputs=describe_inputs(request, plan.mirrors),
            options={**request.describe(), "transport": plan.transport},
            counts={"tables": {n: c.as_dict() for n, c in plan.counts.items()}},
            error=error_text)
        if impl is None:  # at the question: no dialect session is open
            return jobs.record_failure(request.target, job)
        return impl.record_failure(job)

    def _transaction(self, impl: DialectMerge, plan: MergePlan,
                     findings: list[Finding]) -> MergeResult:
        request, ctx = self.request, self.ctx
        prepared = impl.prepare(plan)
        ctx.tell("analyse", request.target.label)
        analysis = impl.analyse()
        self.target_sums = prepared.target_checksums
        self.source_sums = every_source = impl.source_checksums()
        plan.counts = self.counts = analysis.counts
        findings += analysis.findings
        ctx.clock.phase("analyse")
        if self.mode != "run":
            impl.rollback()
            return self._result("validated", findings, plan)
        changed = self._changed_since_shown(plan)
        if changed:
            impl.rollback()
            return self._result("refused", [*findings, *changed], plan)
        if blocking(findings, strict=request.strict):
            impl.rollback()
            return self._result("refused", findings, plan)
        if self.confirm is not None and not request.dry_run and not self.confirm(
                self._result("validated", findings, plan)):
            # a dialect that asks inside its merge transaction (asks_before_transaction)
            impl.rollback()
            return self._result("cancelled", findings, plan)
        ctx.tell("apply", request.target.label)
        applied = impl.apply(analysis)
        ctx.clock.phase("apply")
        for name, n in applied.written.items():
            expected = (analysis.counts[name].inserted
                        - applied.written_while_staging.get(name, 0))
            if n != expected:
                raise DatabaseError(f"{name}: {n} rows written, {expected} expected; the merge "
                                    "is rolled back", code="MERGE_FAILED")
        ctx.tell("verify", request.target.label)
        verification = check_target(impl.runner, analysis.counts, analysis.bans_expected,
                                    request.target.label)
        verification += impl.sources_unchanged(every_source)
        ctx.clock.phase("verify")
        if blocking(verification):
            impl.rollback()
            return self._result("verification-failed", findings, plan,
                                verification=verification)
        if request.dry_run:
            impl.rollback()
            return self._result("dry-run", findings, plan, verification=verification)
        job = jobs.JobRecord(
            job_id=self.job_id, status="succeeded", started_at=self.started,
            finished_at=jobs.utcnow(), inputs=describe_inputs(request, plan.mirrors),
            options={**request.describe(), "transport": plan.transport},
            counts={
                "tables": {n: c.as_dict() for n, c in analysis.counts.items()},
                "source_checksums": every_source,
                "target_checksums_before": prepared.target_checksums,
                "snapshot": prepared.snapshot,
                "inserted_rows": prepared.inserted_rows,
                "bans_expected": analysis.bans_expected,
                "bans_not_applied": analysis.bans_not_applied,
                "findings": [f.as_dict() for f in findings],
                "catalog_fingerprint": prepared.fingerprint,
                "sequences_raised": applied.sequences_raised,
            },
        )
        jobs.write_job(impl.runner, job)
        impl.commit()
        ctx.clock.phase("commit")
        return self._result("succeeded", findings, plan, job_id=self.job_id,
                            verification=verification, snapshot=prepared.snapshot)


def run_merge(request: MergeRequest, *, progress: Progress | None = None,
              preflight: Preflight = full_preflight,
              confirm: Confirm | None = None) -> MergeResult:
    """Validate, then merge in one transaction, then verify (``request.dry_run``: roll back).

    Returns a MergeResult (refused / verification-failed / cancelled results have ``ok``
    False); raises MergeFailed (exit 3) when the merge fails while working.
    """
    return MergeExecutor(request, mode="run", progress=progress, preflight=preflight,
                  confirm=confirm).execute()


def analyse_merge(request: MergeRequest, *, progress: Progress | None = None,
                  preflight: Preflight = full_preflight) -> MergeResult:
    """Validation's data part: stage the sources, analyse conflicts, roll back everything."""
    return MergeExecutor(request, mode="validate", progress=progress, preflight=preflight).execute()
