"""The Oracle merge's steps: a plan of statements, and ``OracleMerge``, the
``DialectMerge`` that runs exactly those statements for the executor (``engine.py``).

Oracle DDL commits, so a run is three parts:

1. *Before* the merge transaction (each DDL commits): the merge lock, taken in a session
   of its own (``LOCK TABLE tcmerge_merge_lock IN EXCLUSIVE MODE NOWAIT``, held until
   the end of the run, released when that session ends, also when tcmerge is killed);
   the job table made if absent; leftovers of killed runs dropped (under the lock, every
   ``TCM_`` object is one); one database link per source (password a bind variable;
   private when allowed, public when it must) and probed, but for a source that is the
   target itself (Cisco's "merge DB1 into DB2" names DB2 too: its rows are the target's
   own, all duplicates, so it is not read again: ``dialect_merge.target_mirrors``); the
   staging tables; the sources' checksums (direct read-only sessions); staging filled
   with ``INSERT /*+ APPEND */ ... SELECT ... FROM tc_x@link`` and committed (LOBs move
   inside the servers; ORA-22992 forbids selecting them over a link); the links closed
   and dropped (nothing needs them any more); the empty snapshot tables and the empty
   work tables of the rules.
2. *The merge transaction*: the merged tables locked in SHARE mode (no other writer
   until its end, as on PostgreSQL), the target's checksums and the snapshot (filled inside
   the transaction, so it shows exactly what the merge changed), the rules
   (``tcmerge.merge.core.MergeRules``, the statements PostgreSQL's script runs too:
   analysis, then apply), verification, the job record, COMMIT.
3. *After* it, also after a failure: staging and work tables dropped (snapshot
   tables too, unless the merge committed), the lock session rolled back.

``OraclePlan`` lists the steps as data; ``render_script`` prints them as a SQL
script (like Alembic's offline mode). ``OracleMerge`` runs the same step lists,
in the same order (the rules check that their work tables are filled in the order
listed). Link passwords are bound at execution only: the script shows
``:tcmerge_link_password``.

Proven here by compilation and by a recording connection (tests/unit); the live
path runs in tests/integration/test_merge_oracle_live.py when a Docker engine
answers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast

import sqlalchemy as sa

from tcmerge.db import create_engine, server_reason
from tcmerge.dburl import DatabaseRef
from tcmerge.dialects.oracle.adapter import PRIVATE_LINK, PUBLIC_LINK, OracleAdapter
from tcmerge.dialects.oracle.ddl import PASSWORD_PARAM
from tcmerge.errors import DatabaseError, TcmergeError
from tcmerge.links import OracleLinkPlan, plan_oracle_link
from tcmerge.merge import oracle as ora
from tcmerge.merge.core import Analysis, MergeRules, Names
from tcmerge.merge.dialect_merge import (
    Applied,
    DialectMerge,
    Prepared,
    RunContext,
    count_mirrors,
)
from tcmerge.merge.jobs import JobRecord, job_values
from tcmerge.merge.plan import MergePlan
from tcmerge.merge.snapshot import MergeInProgress
from tcmerge.merge.verify import check_statements, compare_checksums
from tcmerge.request import MergeRequest
from tcmerge.results import Finding, info
from tcmerge.schema.bookkeeping import tcmerge_jobs
from tcmerge.sqlexec import Runner, SaRunner

if TYPE_CHECKING:
    from tcmerge.validate import ValidationReport

log = logging.getLogger(__name__)


class Conn(Protocol):
    """What the executor needs of a session (``sa.Connection`` fits)."""

    def execute(self, statement: Any, parameters: Any = None) -> Any: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...


#: opens a session on a database for a role ("lock", "merge", "source", "jobs")
Connector = Callable[[DatabaseRef, str], Conn]


@dataclass(frozen=True)
class Step:
    """One statement of the plan (or a marker for work done elsewhere)."""

    phase: str
    statement: sa.ClauseElement | None
    note: str = ""
    session: str = "merge"  # "lock" or "merge"
    creates: str | None = None  # the object this step makes (dropped in finally)
    drops: str | None = None  # the object this step removes
    secret: int | None = None  # binds the password of source ``secret`` (1-based)
    commit: bool = False  # COMMIT after the statement
    hook: str | None = None  # done by the executor itself (e.g. source checksums)
    optional: bool = False  # an error is logged, not raised (closing a link)

    def sql(self) -> str:
        if self.statement is None:
            return f"-- {self.note}"
        return ora.compile_oracle(self.statement).strip()


@dataclass
class OraclePlan:
    """Every statement of an Oracle merge, in order, built before anything runs."""

    request: MergeRequest
    token: str
    link_kind: str  # "private" or "public"
    snapshot: bool = True
    #: the sources (1-based) that are the target itself: no link, not read again
    #: (``dialect_merge.target_mirrors``)
    mirrors: frozenset[int] = frozenset()
    #: per source read (1-based), its database link
    links: dict[int, OracleLinkPlan] = field(default_factory=dict)
    rules: MergeRules = field(init=False)

    def __post_init__(self) -> None:
        privileges = PRIVATE_LINK if self.link_kind == "private" else PUBLIC_LINK
        self.links = {i: plan_oracle_link(ref, privileges, name=ora.link_name(self.token, i))
                      for i, ref in enumerate(self.request.sources, 1)
                      if i not in self.mirrors}
        labels = [r.label for r in self.request.databases]
        self.rules = MergeRules(None, self.request.tables, labels, oracle_names(self.token))

    @property
    def tables(self) -> list[str]:
        return [t.name for t in self.request.tables]

    def snapshot_names(self) -> dict[str, str]:
        if not self.snapshot:
            return {}
        return {t: ora.snapshot_table_name(self.token, t) for t in self.tables}

    def staging_names(self) -> list[str]:
        return [ora.staging_table_name(self.token, t) for t in self.tables]

    def all_names(self) -> list[str]:
        """Every object name the run makes (tests check their lengths)."""
        return ([link.name for link in self.links.values()] + self.staging_names()
                + self.rules.work_names() + list(self.snapshot_names().values()))

    # -- part 1 ----------------------------------------------------------------------------
    def lock_steps(self) -> list[Step]:
        return [
            Step("lock", ora.ensure_lock_table(), "the lock table, if absent", session="lock"),
            Step("lock", ora.lock_merge(), "one merge at a time (ORA-00054: MERGE_IN_PROGRESS)",
                 session="lock"),
        ]

    def before_steps(self) -> list[Step]:
        meta = sa.MetaData()
        staging = {t.name: ora.staging_table(t, self.token, meta) for t in self.request.tables}
        steps = [
            Step("prepare", ora.ensure_jobs_table(), "the job table, if absent"),
            Step("cleanup", ora.drop_leftovers(), "leftovers of killed runs (under the lock)"),
        ]
        for i in sorted(self.mirrors):
            steps.append(Step("links", None, f"source {i} is the target itself: its rows are "
                                             "the target's own (all duplicates), not read again"))
        for i, link in self.links.items():
            steps.append(Step("links", link.create, f"database link to source {i}",
                              creates=link.name, secret=i))
            steps.append(Step("links", link.probe, f"probe source {i} through its link"))
        for name, table in staging.items():
            steps.append(Step("staging", sa.schema.CreateTable(table),
                              f"staging for {name}", creates=table.name))
        steps.append(Step("checksums", None, "checksums of every source read (read-only sessions)",
                          hook="source_checksums"))
        for i, link in self.links.items():
            for model in self.request.tables:
                steps.append(Step("fill", ora.stage_over_link(model, staging[model.name],
                                                              link.name, i),
                                  f"source {i}: {model.name}", commit=True))
        for link in self.links.values():
            steps += self.unlink_steps(link)
        for tname, name in self.snapshot_names().items():
            steps.append(Step("prepare", ora.create_empty_like(
                name, f"SELECT * FROM {ora.quote(tname)}"), f"snapshot of {tname} (empty)",
                creates=name))
        for statement, name in zip(self.rules.create_statements(), self.rules.work_names(),
                                   strict=True):
            steps.append(Step("prepare", statement, "work table (empty)", creates=name))
        return steps

    def unlink_steps(self, link: OracleLinkPlan) -> list[Step]:
        return [Step("unlink", link.close, f"close {link.name}", optional=True),
                Step("unlink", link.drop, f"drop {link.name}", drops=link.name)]

    # -- part 2 (listing; run by the executor through OracleMerge) ---------------------------
    def transaction_steps(self, recording: bool = True) -> list[Step]:
        adapter = OracleAdapter()
        steps = [Step("transaction", None, "BEGIN: Oracle starts the transaction with the "
                                           "first DML"),
                 Step("transaction", ora.lock_tables(self.tables),
                      "no other writer of the merged tables until the end (readers pass)")]
        if recording and (self.snapshot or self.mirrors):
            steps += [Step("transaction", adapter.checksum_statement(t),
                           f"checksum of the target's {t.name}") for t in self.request.tables]
        if recording:
            steps.append(Step("transaction", None, "the fingerprint of everything else in the "
                                                   "schema (dictionary views; verify compares)",
                              hook="fingerprint"))
        steps += [Step("transaction", snapshot_fill(table, name), f"snapshot of {table}")
                  for table, name in self.snapshot_names().items()]
        steps += [Step("transaction", sa.text(f"SELECT COUNT(*) FROM {ora.quote(t)}"),
                       f"rows of the target's {t}") for t in self.tables]
        for name, _query in self.rules.work_queries():
            steps.append(Step("rules", self.rules.fill_statement(name),
                              f"analysis: {name} (then its counts and findings are read)"))
        steps += [Step("rules", refusal, "stop where the merge is refused (the executor reads "
                                         "the findings instead)", hook="findings")
                  for refusal in self.rules.refusals()]
        for name, statement in self.rules.apply_statements():
            steps.append(Step("apply", statement, f"apply: {name}"))
        steps += [Step("verify", statement, f"verify: {what}")
                  for what, statement in check_statements(self.tables)]
        steps.append(Step("job", job_insert(), "the job record"))
        steps.append(Step("commit", sa.text("COMMIT"), "the merge commits"))
        return steps

    # -- part 3 ----------------------------------------------------------------------------
    def after_steps(self, *, succeeded: bool) -> list[Step]:
        steps = [Step("drop", ora.drop_table(n), f"drop {n}", drops=n)
                 for n in [*self.staging_names(), *self.rules.work_names()]]
        if not succeeded:
            steps += [Step("drop", ora.drop_table(n), f"drop {n} (the merge did not commit)",
                           drops=n) for n in self.snapshot_names().values()]
        steps.append(Step("unlock", sa.text("ROLLBACK"), "release the merge lock",
                          session="lock"))
        return steps

    def script(self, *, succeeded: bool = True) -> list[Step]:
        return [*self.lock_steps(), *self.before_steps(), *self.transaction_steps(),
                *self.after_steps(succeeded=succeeded)]


def oracle_names(token: str) -> Names:
    """The run's staging and work tables: ``tcm_<token>_s_<table>``, ``tcm_<token>_w_<name>``."""
    return Names(staging=lambda table: ora.staging_table_name(token, table),
                 work=lambda name: ora.work_table_name(token, name))


def snapshot_fill(table: str, name: str) -> sa.TextClause:
    return ora.insert_query(name, f"SELECT * FROM {ora.quote(table)}")


def job_insert() -> sa.Insert:
    """INSERT INTO tcmerge_jobs with bind parameters (JSON texts, no password)."""
    return sa.insert(tcmerge_jobs)


def render_script(plan: OraclePlan, *, succeeded: bool = True) -> str:
    """The whole plan as a SQL script (offline: nothing connects). PL/SQL blocks end
    with ``/``, statements with ``;``; binds stay ``:name``."""
    out: list[str] = [
        f"-- tcmerge Oracle merge, job token {plan.token}: "
        f"{len(plan.request.sources)} source(s) into {plan.request.target.label}",
        "-- Run in SQL*Plus or SQLcl as the target's user; a second session holds the lock",
        f"-- steps (lock session). No password is written here: each CREATE DATABASE LINK "
        f"reads its source's password from the bind variable :{PASSWORD_PARAM}",
        f"-- (VARIABLE {PASSWORD_PARAM} VARCHAR2(128), then EXEC :{PASSWORD_PARAM} := "
        "'...' before that block, as the comment above it says)."]
    phase = None
    for step in plan.script(succeeded=succeeded):
        if step.phase != phase:
            phase = step.phase
            out.append(f"\n-- [{phase}]" + (" (lock session)" if step.session == "lock"
                                             else ""))
        text = step.sql()
        if step.statement is None:
            out.append(text)
            continue
        out.append(f"-- {step.note}")
        if step.secret is not None:
            source = plan.request.sources[step.secret - 1]
            out.append(f"-- :{PASSWORD_PARAM} = the password of source {step.secret} "
                       f"({source.label})")
        plsql = text.startswith(("BEGIN", "DECLARE"))
        out.append(text + ("\n/" if plsql else ";"))
        if step.commit:
            out.append("COMMIT;")
    return "\n".join(out) + "\n"


def ora_code(exc: BaseException) -> int | None:
    """The ORA- error number of a driver error (python-oracledb puts it on args[0])."""
    orig = getattr(exc, "orig", exc)
    args = getattr(orig, "args", ())
    code = getattr(args[0], "code", None) if args else None
    if isinstance(code, int):
        return code
    text = str(orig)
    if "ORA-" in text:
        digits = text.split("ORA-", 1)[1][:5]
        if digits.isdigit():
            return int(digits)
    return None


class EngineSessions:
    """Sessions through SQLAlchemy engines (one per database), disposed at close."""

    def __init__(self) -> None:
        self.engines: dict[int, sa.Engine] = {}

    def __call__(self, ref: DatabaseRef, role: str) -> Conn:
        engine = self.engines.get(id(ref))
        if engine is None:
            engine = self.engines[id(ref)] = create_engine(ref)
        try:
            return engine.connect()
        except sa.exc.DBAPIError as exc:
            raise DatabaseError(f"cannot connect to {ref.label}: {server_reason(exc, ref)}",
                                code="CONNECTION_FAILED") from None

    def close(self) -> None:
        for engine in self.engines.values():
            engine.dispose()
        self.engines.clear()


def link_kind_of(report: ValidationReport) -> str | None:
    kind = report.transports.get("dblink", {}).get("link")
    return kind if kind in ("private", "public") else None


class OracleMerge(DialectMerge):
    """The Oracle steps of a merge: runs an ``OraclePlan`` for the executor."""

    asks_before_transaction: ClassVar[bool] = False
    driver_errors: ClassVar[tuple[type[BaseException], ...]] = (sa.exc.DBAPIError,)

    def __init__(self, request: MergeRequest, report: ValidationReport, ctx: RunContext,
                 connect: Connector | None = None) -> None:
        super().__init__(request, report, ctx)
        self.sessions = EngineSessions() if connect is None else None
        self.connect: Connector = connect or self.sessions  # type: ignore[assignment]
        self.token = ora.job_token(ctx.job_id)
        self.created: dict[str, Step] = {}  # object name -> the step that made it
        #: per source read (1-based) its checksums as staged; the target's before the merge
        self.source_sums: dict[int, dict[str, str]] = {}
        self.target_before: dict[str, str] = {}
        self.conn: Conn | None = None
        self.lock: Conn | None = None
        self.oracle_plan: OraclePlan | None = None

    def data_not_checked(self) -> Finding:
        # staging needs DDL in the target (it commits): validate changes nothing, so the
        # data analysis is left to run / run --dry-run
        return info(
            "DATA_NOT_CHECKED",
            "on Oracle the merge's data analysis needs staging tables in the target "
            "(Oracle DDL commits), so validate does not run it; `tcmerge run --dry-run` "
            "runs it and rolls back", database=self.request.target.label)

    def plan(self) -> MergePlan:
        kind = link_kind_of(self.report)
        if kind is None:
            raise DatabaseError("the target user may create no database link (needs CREATE "
                                "DATABASE LINK, or CREATE and DROP PUBLIC DATABASE LINK)",
                                code="PRIVILEGE_MISSING")
        plan = self.oracle_plan = OraclePlan(self.request, self.token, kind,
                                             snapshot=self.request.snapshot,
                                             mirrors=self.mirrors)
        return MergePlan(inputs=[r.label for r in self.request.databases],
                         transport="dblink", tables=plan.tables, mirrors=self.mirrors)

    def open(self) -> None:
        self.lock = self.connect(self.request.target, "lock")
        self.conn = self.connect(self.request.target, "merge")

    @property
    def _conn(self) -> Conn:
        assert self.conn is not None
        return self.conn

    @property
    def runner(self) -> Runner:
        return SaRunner(self._conn, ora.ORACLE)

    # -- running steps ---------------------------------------------------------------------
    def _params(self, step: Step) -> dict[str, Any] | None:
        if step.secret is None:
            return None
        return {PASSWORD_PARAM: self.request.sources[step.secret - 1].url.password or ""}

    def _run(self, steps: list[Step]) -> None:
        for step in steps:
            if step.hook == "source_checksums":
                self.source_sums = self.read_source_checksums()
                continue
            if step.statement is None:
                continue
            conn = self.lock if step.session == "lock" else self.conn
            assert conn is not None
            try:
                conn.execute(step.statement, self._params(step))
            except sa.exc.DBAPIError as exc:
                if step.phase == "lock" and ora_code(exc) == ora.LOCK_BUSY:
                    raise MergeInProgress("another merge is running on this target") from None
                if step.optional:
                    log.debug("%s: %s", step.note, ora_code(exc))
                    continue
                raise self._wrap(exc, step) from None
            if step.creates is not None:
                self.created[step.creates] = step
            if step.drops is not None:
                self.created.pop(step.drops, None)
            if step.commit:
                conn.commit()

    def _wrap(self, exc: sa.exc.DBAPIError, step: Step) -> DatabaseError:
        ref = (self.request.sources[step.secret - 1] if step.secret
               else self.request.target)
        secrets = tuple(s for r in self.request.databases for s in r.secrets)
        reason = server_reason(exc, ref)
        for secret in secrets:
            reason = reason.replace(secret, "***")
        code = "CONNECTION_FAILED" if step.phase in ("links", "fill") else "MERGE_FAILED"
        return DatabaseError(f"{step.note}: {reason}", code=code)

    def read_source_checksums(self) -> dict[int, dict[str, str]]:
        """Per source read (1-based; not the target named as one), its checksums, read in
        one read-only transaction of its own."""
        adapter = OracleAdapter()
        sums: dict[int, dict[str, str]] = {}
        for i, ref in enumerate(self.request.sources, 1):
            if i in self.mirrors:
                continue
            conn = self.connect(ref, "source")
            try:
                conn.execute(sa.text("SET TRANSACTION READ ONLY"))
                one: dict[str, str] = {}
                for table in self.request.tables:
                    row = conn.execute(adapter.checksum_statement(table)).one()
                    one[table.name] = f"{row[0]}:{row[1]}"
                conn.rollback()
                sums[i] = one
            except sa.exc.DBAPIError as exc:
                raise DatabaseError(f"reading checksums of {ref.label} failed: "
                                    f"{server_reason(exc, ref)}",
                                    code="CONNECTION_FAILED") from None
            finally:
                conn.close()
        return sums

    # -- the steps the executor calls --------------------------------------------------------
    def prepare(self, plan: MergePlan) -> Prepared:
        oplan = self.oracle_plan
        assert oplan is not None
        self._run(oplan.lock_steps())
        self._run(oplan.before_steps())
        self.ctx.clock.phase("stage")
        return self.begin_transaction(oplan)

    def begin_transaction(self, oplan: OraclePlan) -> Prepared:
        """The merge transaction's first statements: the merged tables locked, the target
        as it was (checksums, fingerprint, snapshot), the rules' first counts."""
        ctx, request, conn = self.ctx, self.request, self._conn
        self.rules = MergeRules(self.runner, request.tables,
                                [r.label for r in request.databases], oracle_names(self.token))
        adapter = OracleAdapter()
        # no other writer until COMMIT/ROLLBACK: the checksums, the snapshot, the rules and
        # the verification all see the same target (as on PostgreSQL)
        conn.execute(ora.lock_tables(oplan.tables))
        prepared = Prepared()
        # for restore, and as the checksums of a source that is the target
        if ctx.recording and (request.snapshot or self.mirrors):
            for table in request.tables:
                row = conn.execute(adapter.checksum_statement(table)).one()
                prepared.target_checksums[table.name] = f"{row[0]}:{row[1]}"
        self.target_before = prepared.target_checksums
        # everything else in the schema, before the first write: verify compares with it
        if ctx.recording:
            prepared.fingerprint = adapter.catalog_fingerprint(cast(sa.Connection, conn),
                                                               oplan.tables)
        if ctx.mode == "run":
            prepared.snapshot = oplan.snapshot_names()
        for tname, name in prepared.snapshot.items():
            conn.execute(snapshot_fill(tname, name))
        ctx.clock.phase("snapshot")
        self.rules.count_target()
        self.rules.rooms_owners()
        return prepared

    def analyse(self) -> Analysis:
        analysis = self.rules.analyse()
        count_mirrors(analysis, self.mirrors)
        return analysis

    def source_checksums(self) -> list[dict[str, str]]:
        # a source that is the target has the target's checksums
        return [self.source_sums.get(i, self.target_before)
                for i in range(1, len(self.request.sources) + 1)]

    def apply(self, analysis: Analysis) -> Applied:
        return Applied(written=self.rules.apply(analysis.counts))

    def sources_unchanged(self, before: list[dict[str, str]]) -> list[Finding]:
        found: list[Finding] = []
        for i, now in self.read_source_checksums().items():
            found += compare_checksums(self.request.sources[i - 1].label, before[i - 1], now)
        return found

    def commit(self) -> None:
        self._conn.commit()

    def rollback(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(sa.exc.DBAPIError):
                self.conn.rollback()

    def record_failure(self, job: JobRecord) -> bool:
        """The failed job, in a transaction of its own (a new session)."""
        try:
            conn = self.connect(self.request.target, "jobs")
        except TcmergeError:
            return False
        try:
            conn.execute(ora.ensure_jobs_table())
            conn.execute(job_insert(), job_values(job))
            conn.commit()
        except sa.exc.DBAPIError:
            return False
        finally:
            conn.close()
        return True

    def describe_error(self, exc: BaseException) -> str:
        return server_reason(exc, self.request.target)

    def close(self, *, succeeded: bool) -> None:
        """Drop what this run made (after a failure too), then release the lock."""
        plan, conn = self.oracle_plan, self.conn
        if conn is not None and plan is not None:
            self.rollback()
            for link in plan.links.values():  # a failure before the links were dropped
                if link.name in self.created:
                    self._quietly(plan.unlink_steps(link))
            for step in plan.after_steps(succeeded=succeeded):
                if step.session == "merge" and step.drops in self.created:
                    self._quietly([step])
            for name in list(self.created):  # anything else it made
                if not (succeeded and name in plan.snapshot_names().values()):
                    self._quietly([Step("drop", ora.drop_table(name), f"drop {name}",
                                        drops=name)])
        if conn is not None:
            conn.close()
        if self.lock is not None:
            with contextlib.suppress(sa.exc.DBAPIError):
                self.lock.rollback()  # releases the merge lock
            self.lock.close()
        if self.sessions is not None:
            self.sessions.close()

    def _quietly(self, steps: list[Step]) -> None:
        for step in steps:
            try:
                self._run([step])
            except TcmergeError as exc:
                log.warning("could not %s: %s", step.note, exc.message)


def iter_sql(plan: OraclePlan) -> Iterator[str]:
    """Every statement's Oracle text (tests search them for secrets and lengths)."""
    for step in plan.script(succeeded=False) + plan.after_steps(succeeded=True):
        yield step.sql()
