"""The merge engine: lock, preflight, then stage → analyse → (refuse | [ask] → apply →
verify → record).

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

import contextlib
import importlib
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import psycopg
from psycopg import sql

from tcmerge.dburl import DatabaseRef, without_password
from tcmerge.dialects import adapter_class
from tcmerge.dialects.postgresql.fingerprint import catalog_fingerprint
from tcmerge.errors import EXIT_FAILURE, DatabaseError, TcmergeError
from tcmerge.lock import target_lock
from tcmerge.merge import indexes, jobs, pg
from tcmerge.merge.checksums import table_checksums
from tcmerge.merge.core import Analysis, duplicate_rows
from tcmerge.merge.plan import MergePlan, MergeResult, TableCounts
from tcmerge.merge.rules_pg import PgRules
from tcmerge.merge.snapshot import MergeInProgress, take_snapshot, try_merge_lock
from tcmerge.merge.transport import (
    DATE_COLUMN,
    DIRECT_TABLES,
    TRANSPORTS,
    Progress,
    SourceReader,
    create_staging,
    direct_compatible,
    in_rooms,
)
from tcmerge.merge.verify import check_target, compare_checksums
from tcmerge.request import MergeRequest
from tcmerge.results import Finding, blocking, error
from tcmerge.sqlexec import PsycopgRunner
from tcmerge.validate import ValidationReport, analysis_request, choose_transport, validate

#: work_mem of the merge transaction's analysis and apply (when the server's is lower)
WORK_MEM = "256MB"
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
    result = _Merge(request, mode="validate", progress=None,
                    preflight=lambda _request: report).execute()
    return [f for f in result.findings if f not in report.findings]


def public_url(ref: DatabaseRef) -> str:
    """The URL without its password (for job records)."""
    return without_password(ref.url).render_as_string(hide_password=False)


def describe_inputs(request: MergeRequest) -> dict[str, Any]:
    def one(ref: DatabaseRef) -> dict[str, Any]:
        return {"label": ref.label, "name": ref.name, "url": public_url(ref)}

    # the same shape for every dialect; the dialect says which one the job merged
    return {"dialect": request.target.dialect, "target": one(request.target),
            "sources": [one(s) for s in request.sources]}


class _Merge:
    def __init__(self, request: MergeRequest, *, mode: str, progress: Progress | None,
                 preflight: Preflight, confirm: Confirm | None = None) -> None:
        self.request = request
        self.confirm = confirm
        #: "run"; "validate" (stage, analyse, roll back); "preview": validate plus the
        #: inputs' checksums, what run shows at its question (see ``_ask``)
        self.mode = mode
        #: the one-merge lock is held by run's lock session (tcmerge.lock)
        self.locked = False
        #: the preview the user said yes to: the merge applies only exactly that
        self.shown: _Merge | None = None
        #: checksums of the inputs as the analysis saw them (preview and run)
        self.target_sums: dict[str, str] = {}
        self.source_sums: list[dict[str, str]] = []
        self.counts: dict[str, TableCounts] = {}
        self.progress = progress
        self.preflight = preflight
        self.readers: list[SourceReader] = []
        self.job_id = jobs.new_job_id()
        self.started = jobs.utcnow()
        self.t0 = time.monotonic()
        self.timings: dict[str, float] = {}
        self._mark = self.t0

    @property
    def recording(self) -> bool:
        return self.mode == "run" and not self.request.dry_run

    def _tell(self, what: str, where: str = "", rows: int = 0) -> None:
        if self.progress is not None:
            self.progress(what, where, rows)

    def _phase(self, name: str) -> None:
        now = time.monotonic()
        self.timings[name] = self.timings.get(name, 0.0) + now - self._mark
        self._mark = now

    def _result(self, status: str, findings: list[Finding], plan: MergePlan | None,
                **kw: Any) -> MergeResult:
        return MergeResult(status=status, findings=findings, plan=plan,
                           strict=self.request.strict, elapsed=time.monotonic() - self.t0,
                           timings=dict(self.timings), **kw)

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
            self.locked = lock.held
            return self._execute(dialect)

    def _ask(self, report: ValidationReport, dialect: str) -> MergeResult | None:
        """Before the merge: the whole analysis in a transaction that writes nothing and
        ends, then the question, asked with no transaction open and no lock held but the
        one-merge lock. None when the answer is yes (the merge then applies only what was
        shown, see ``_changed_since_shown``); else the result to return."""
        assert self.confirm is not None
        # staged as validate stages: no password is handed to a server before the answer
        preview = _Merge(analysis_request(self.request, report), mode="preview",
                         progress=self.progress, preflight=lambda _request: report)
        # a failure or an interruption (a dropped terminal) before the question is this
        # run's: recorded as its failed job
        preview.locked, preview.job_id, preview.started = self.locked, self.job_id, self.started
        result = preview._execute(dialect)
        self.timings.update({f"preview {k}": v for k, v in preview.timings.items()})
        self._mark = time.monotonic()
        if result.status != "validated" or blocking(result.findings,
                                                    strict=self.request.strict):
            return self._result("refused", result.findings, result.plan)
        try:
            yes = self.confirm(result)
        except BaseException as exc:
            assert result.plan is not None
            self._record_failure(result.plan, f"{type(exc).__name__}: interrupted at the "
                                 "question, nothing was written")
            raise
        if not yes:
            return self._result("cancelled", result.findings, result.plan)
        self.shown, self.confirm = preview, None
        return None

    def _execute(self, dialect: str) -> MergeResult:
        report = self.preflight(self.request)
        if report.merge_tables:
            # the inputs' live columns decide what moves (contract: the schema of a merge)
            self.request = replace(self.request, tables=tuple(report.merge_tables))
        request = self.request
        findings = list(report.findings)
        self._phase("preflight")
        if blocking(findings, strict=request.strict):
            return self._result("refused", findings, None)
        # the dialect's merge, named by its adapter (Oracle still asks inside its merge
        # transaction: its staging DDL commits)
        module, function = adapter_class(dialect).merge_runner.split(":")
        runner: Callable[[_Merge, ValidationReport, list[Finding]], MergeResult] = getattr(
            importlib.import_module(module), function)
        return runner(self, report, findings)

    def _run_postgresql(self, report: ValidationReport,
                        findings: list[Finding]) -> MergeResult:
        request, dialect = self.request, "postgresql"
        if self.confirm is not None and not request.dry_run and self.mode == "run":
            answer = self._ask(report, dialect)
            if answer is not None:
                return answer
        transport = choose_transport(report, request.transport)
        if transport not in TRANSPORTS:
            raise DatabaseError(f"unknown transport {transport!r}")
        plan = MergePlan(inputs=[r.label for r in request.databases], transport=transport,
                         tables=[t.name for t in request.tables])
        conn = pg.open_session(request.target, role="merge")
        try:
            return self._transaction(conn, plan, findings, target_mirrors(report),
                                     link_auths(report))
        except MergeInProgress as exc:
            self._rollback(conn)
            findings.append(error("MERGE_IN_PROGRESS", exc.message,
                                  database=request.target.label,
                                  hint="wait for it to finish (tcmerge jobs list shows "
                                       "the merges)"))
            return self._result("refused", findings, plan)
        except (TcmergeError, psycopg.Error) as exc:
            self._rollback(conn)
            message = exc.message if isinstance(exc, TcmergeError) else pg.wrap(
                exc, request.target, "merging into").message
            code = exc.code if isinstance(exc, TcmergeError) else "MERGE_FAILED"
            recorded = self._record_failure(plan, f"{code}: {message}")
            what = "validation" if self.mode == "validate" else "merge"
            raise MergeFailed(f"{what} aborted, the target is unchanged: {message}", code=code,
                              job_id=self.job_id if recorded else None,
                              findings=findings) from None
        except BaseException as exc:  # interrupted, or a bug: still roll back and record
            self._rollback(conn)
            self._record_failure(plan, f"{type(exc).__name__}: interrupted or internal error")
            raise
        finally:
            for reader in self.readers:
                reader.close()
            conn.close()

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

    def _set_indexes_aside(self, conn: pg.PgConn, rules: PgRules,
                           tables: list[str]) -> list[indexes.SetAside]:
        """The indexes of the tables loaded directly, dropped until every row is in,
        where at least as many rows come in as the table holds (see indexes.py)."""
        aside = []
        for table in tables:
            incoming = sum(reader.estimated_rows(table) for reader in self.readers)
            if rules.target_counts[table] <= incoming:
                dropped = indexes.set_aside(conn, table)
                if dropped is not None:
                    aside.append(dropped)
        return aside

    def _record_failure(self, plan: MergePlan, error_text: str) -> bool:
        """The failed job, in a session of its own (the merge's was rolled back)."""
        if self.mode == "validate" or self.request.dry_run:
            return False
        request = self.request
        return jobs.record_failure(request.target, jobs.JobRecord(
            job_id=self.job_id, status="failed", started_at=self.started,
            finished_at=jobs.utcnow(), inputs=describe_inputs(request),
            options={**request.describe(), "transport": plan.transport},
            counts={"tables": {n: c.as_dict() for n, c in plan.counts.items()}},
            error=error_text))

    def _rollback(self, conn: pg.PgConn) -> None:
        if not conn.closed and not conn.broken:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()

    def _transaction(self, conn: pg.PgConn, plan: MergePlan, findings: list[Finding],
                     mirrors: frozenset[int] = frozenset(),
                     auths: dict[str, str] | None = None) -> MergeResult:
        request = self.request
        names = [t.name for t in request.tables]
        if conn.info.server_version >= 140000:
            # a killed client is noticed even during a long statement
            conn.execute("SET client_connection_check_interval = 1000")
        if self.mode == "run" and not self.locked and not try_merge_lock(conn):
            # the lock session could not take the lock (tcmerge.lock): taken here instead
            raise MergeInProgress("another tcmerge merge or restore is changing this target")
        if self.mode != "validate":
            # No other writer until commit: the snapshot, the checksums and the rules all
            # see the same target (SHARE lets readers through and blocks writers).
            conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(
                sql.SQL(", ").join(sql.Identifier(n) for n in names)))
        # everything else in the target, before the first write: verify compares with it
        untouched = catalog_fingerprint(conn, names) if self.recording else None
        if self.mode == "run":
            jobs.ensure_jobs_table(PsycopgRunner(conn))
        create_staging(conn, request.tables)
        reader_cls = TRANSPORTS[plan.transport]
        # source queries that run beside the target's work take turns (see transport.py)
        turn = threading.Lock()
        # a source that is the target itself is not read again (see target_mirrors)
        self.readers = [reader_cls(ref, i, conn, turn, (auths or {}).get(ref.label))
                        for i, ref in enumerate(request.sources, 1) if i not in mirrors]
        rules = PgRules(conn, request.tables, plan.inputs)
        marks: list[tuple[str, dict[str, str]]] = []
        for reader in self.readers:
            # each source in one read-only snapshot, kept until all of it is staged:
            # its checksums are those of exactly what is merged
            reader.open()
            if self.mode != "validate":
                reader.prepare_checksums(names)
            reader.stage_holders(names)
        for reader in self.readers:
            reader.load_holders()
        rules.rooms_owners()
        rules.count_target()
        rules.target_keys()
        # the target as it is before the first row is written: checksums and snapshot
        target_before: dict[str, str] = {}
        snapshot: dict[str, str] = {}
        if ((self.recording and request.snapshot) or self.mode == "preview" or self.shown
                or mirrors):
            target_before = table_checksums(conn, names)
        if self.mode == "run" and request.snapshot:
            snapshot = take_snapshot(conn, self.job_id, names)
        self._phase("snapshot")
        # Validation writes nothing into the target's tables: every row goes to the TEMP
        # staging tables (a copy rolled back would still grow and lock the live tables).
        direct_ok = {t.name for t in request.tables if self.mode == "run"
                     and t.name in DIRECT_TABLES and direct_compatible(conn, t)}
        staged: dict[str, dict[int, int]] = {t.name: {} for t in request.tables}
        direct: dict[str, dict[int, int]] = {t: {} for t in direct_ok}
        aside = self._set_indexes_aside(conn, rules, sorted(direct_ok))
        for reader in self.readers:
            owned = rules.owned_shared_rooms(reader.inp) \
                if direct_ok & set(DATE_COLUMN) else []
            for table in request.tables:
                if table.name in direct_ok:
                    if owned and table.name in DATE_COLUMN:
                        # what the analysis needs of the owner's rows of shared rooms,
                        # read beside the copy when a side session is open (the keys of
                        # the staged rows are read in the target)
                        reader.stage_keys(table, in_rooms(table.name, owned))
                    # rows of rooms no other input has (and the owner's rows of shared
                    # rooms in the message tables) go straight into the target table
                    rooms = rules.staged_rooms(table.name, reader.inp)
                    direct[table.name][reader.inp] = reader.direct(
                        table, in_rooms(table.name, rooms, negate=True), self.progress)
                    staged[table.name][reader.inp] = reader.stage(
                        table, self.progress, in_rooms(table.name, rooms))
                else:
                    staged[table.name][reader.inp] = reader.stage(table, self.progress)
            if self.mode == "run":
                marks.append(reader.mark(names))
            reader.finish()
        rules.moved(staged, direct)
        for reader in self.readers:
            reader.load_keys()
            # the sources compute their checksums while the target analyses
            reader.send_checksums()
        self._phase("stage")
        self._tell("analyse", request.target.label)
        # the analysis and apply sort and hash whole staged tables: enough memory for
        # them not to spill to temporary files (this transaction only; never lowered)
        conn.execute("SELECT set_config('work_mem', %s, true) "
                     "WHERE pg_size_bytes(current_setting('work_mem')) < pg_size_bytes(%s)",
                     (WORK_MEM, WORK_MEM))
        analysis = rules.analyse()
        count_mirrors(analysis, mirrors)
        # collected before any prompt: no source session waits on the user
        before = [reader.staged_checksums() for reader in self.readers] \
            if self.mode != "validate" else []
        # per source in order; a source that is the target has the target's checksums
        every_source: list[dict[str, str]] = []
        if self.mode != "validate":
            by_input = {r.inp: sums for r, sums in zip(self.readers, before, strict=True)}
            every_source = [by_input.get(i, target_before)
                            for i in range(1, len(request.sources) + 1)]
        self.target_sums, self.source_sums = target_before, every_source
        plan.counts = self.counts = analysis.counts
        findings += analysis.findings
        self._phase("analyse")
        if self.mode != "run":
            conn.rollback()
            return self._result("validated", findings, plan)
        changed = self._changed_since_shown(plan)
        if changed:
            conn.rollback()
            return self._result("refused", [*findings, *changed], plan)
        if blocking(findings, strict=request.strict):
            conn.rollback()
            return self._result("refused", findings, plan)
        self._tell("apply", request.target.label)

        def after_messages() -> None:
            self._phase("apply")
            for dropped in aside:
                self._tell(f"index {dropped.table}", request.target.label)
                indexes.rebuild(conn, dropped)
            self._phase("index")
            for reader, (xmin, _shapes) in zip(self.readers, marks, strict=True):
                # what verification compares with the staging snapshot: read while the
                # target repairs the counters (late, and beside one busy core)
                reader.check_unchanged(names, xmin)

        written = rules.apply(analysis.counts, after_messages=after_messages)
        # ids the database hands out itself continue above the merged ones
        sequences = pg.raise_sequences(conn, names)
        self._phase("apply")
        for name, n in written.items():
            expected = analysis.counts[name].inserted - sum(direct.get(name, {}).values())
            if n != expected:
                raise DatabaseError(f"{name}: {n} rows written, {expected} expected; the merge "
                                    "is rolled back", code="MERGE_FAILED")
        self._tell("verify", request.target.label)
        verification = check_target(PsycopgRunner(conn), analysis.counts, analysis.bans_expected,
                                    request.target.label)
        for reader, sums, (xmin, shapes) in zip(self.readers, before, marks, strict=True):
            # one checksum pass per source: a cheap proof that nothing changed since the
            # staging snapshot, else the full comparison (see checksums.py)
            if not reader.unchanged_since(sums, xmin, shapes):
                verification += compare_checksums(reader.ref.label, sums,
                                                  reader.checksums(names))
        for reader in self.readers:
            reader.close()
        self._phase("verify")
        if blocking(verification):
            conn.rollback()
            return self._result("verification-failed", findings, plan,
                                verification=verification)
        if request.dry_run:
            conn.rollback()
            return self._result("dry-run", findings, plan, verification=verification)
        job = jobs.JobRecord(
            job_id=self.job_id, status="succeeded", started_at=self.started,
            finished_at=jobs.utcnow(), inputs=describe_inputs(request),
            options={**request.describe(), "transport": plan.transport},
            counts={
                "tables": {n: c.as_dict() for n, c in analysis.counts.items()},
                "source_checksums": every_source,
                "target_checksums_before": target_before,
                "snapshot": snapshot,
                "bans_expected": analysis.bans_expected,
                "bans_not_applied": analysis.bans_not_applied,
                "findings": [f.as_dict() for f in findings],
                "catalog_fingerprint": untouched,
                "sequences_raised": sequences,
            },
        )
        jobs.write_job(PsycopgRunner(conn), job)
        conn.commit()
        self._phase("commit")
        return self._result("succeeded", findings, plan, job_id=self.job_id,
                            verification=verification, snapshot=snapshot)


def run_postgresql(merge: _Merge, report: ValidationReport,
                   findings: list[Finding]) -> MergeResult:
    """The PostgreSQL merge (``PostgresAdapter.merge_runner``), once its preflight passed."""
    return merge._run_postgresql(report, findings)


def target_mirrors(report: ValidationReport) -> frozenset[int]:
    """The sources (1-based) that are the target database itself (TARGET_IS_SOURCE, as
    Cisco's procedure names DB2 in "merge DB1 into DB2"). Every row of such a source is a
    row the target holds: a duplicate of input 0 whatever the other inputs hold, and it
    changes no owner, counter or verdict. The merge therefore does not read it again: its
    counts are the target's rows, each a duplicate (``count_mirrors``)."""
    return frozenset(i for i, record in enumerate(report.databases[1:], 1)
                     if record.get("same_as") == "target")


def link_auths(report: ValidationReport) -> dict[str, str]:
    """Per source label, how validation decided its dblink connection logs in (the
    decision it warned about, DBLINK_SENDS_PASSWORD, is the one the merge follows)."""
    paths = report.transports.get("dblink", {}).get("sources", [])
    return {str(p["source"]): str(p["auth"]) for p in paths if p.get("auth")}


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


def run_merge(request: MergeRequest, *, progress: Progress | None = None,
              preflight: Preflight = full_preflight,
              confirm: Confirm | None = None) -> MergeResult:
    """Validate, then merge in one transaction, then verify (``request.dry_run``: roll back).

    Returns a MergeResult (refused / verification-failed / cancelled results have ``ok``
    False); raises MergeFailed (exit 3) when the merge fails while working.
    """
    return _Merge(request, mode="run", progress=progress, preflight=preflight,
                  confirm=confirm).execute()


def analyse_merge(request: MergeRequest, *, progress: Progress | None = None,
                  preflight: Preflight = full_preflight) -> MergeResult:
    """Validation's data part: stage the sources, analyse conflicts, roll back everything."""
    return _Merge(request, mode="validate", progress=progress, preflight=preflight).execute()
