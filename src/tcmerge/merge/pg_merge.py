"""The PostgreSQL merge's steps (``DialectMerge``): one psycopg session on the target
holds the whole merge transaction; the sources are read by the transports (binary COPY
relay or dblink) into TEMP staging tables, or straight into the target's tables where
no other input has the rows' rooms.

Staging is TEMP and dblink connections die with the session, so a rollback leaves the
target as it was: validate and a preview stage and analyse exactly as run does.
"""

from __future__ import annotations

import contextlib
import threading
from typing import ClassVar

import psycopg
from psycopg import sql

from tcmerge.dburl import DatabaseRef
from tcmerge.dialects.postgresql.adapter import PostgresAdapter
from tcmerge.dialects.postgresql.fingerprint import catalog_fingerprint
from tcmerge.errors import DatabaseError
from tcmerge.merge import indexes, jobs, pg
from tcmerge.merge.checksums import RECORD, TEXT, table_checksums
from tcmerge.merge.core import Analysis
from tcmerge.merge.dialect_merge import (
    Applied,
    DialectMerge,
    Prepared,
    RunContext,
    count_mirrors,
)
from tcmerge.merge.plan import MergePlan
from tcmerge.merge.rules_pg import SETTLED_IN, PgRules
from tcmerge.merge.snapshot import MergeInProgress, take_snapshot, try_merge_lock
from tcmerge.merge.transport import (
    DATE_COLUMN,
    DIRECT_TABLES,
    FIRST_ROW,
    FIRST_ROW_DIGESTS,
    LISTED,
    TRANSPORTS,
    SourceReader,
    create_staging,
    direct_compatible,
    except_rooms,
    for_input,
    in_rooms,
    listed_windows,
    room_digest_queries,
)
from tcmerge.merge.verify import compare_checksums
from tcmerge.request import MergeRequest
from tcmerge.results import Finding, info
from tcmerge.sqlexec import PsycopgRunner, Runner
from tcmerge.validate import ValidationReport, choose_transport

#: work_mem of the merge transaction's analysis and apply (when the server's is lower)
WORK_MEM = "256MB"


class PostgresMerge(DialectMerge):
    driver_errors: ClassVar[tuple[type[BaseException], ...]] = (psycopg.Error,)

    rules: PgRules
    _runner: PsycopgRunner

    def __init__(self, request: MergeRequest, report: ValidationReport,
                 ctx: RunContext) -> None:
        super().__init__(request, report, ctx)
        self.conn: pg.PgConn | None = None
        self.readers: list[SourceReader] = []
        self.target_before: dict[str, str] = {}
        #: per source read: the staging snapshot's xmin and shapes
        self.staging_marks: list[tuple[str, dict[str, str]]] = []
        #: per table and input the rows copied straight into the target's table
        self.direct: dict[str, dict[int, int]] = {}
        #: per table and input the rows of settled rooms (``_settle``); per input how many
        #: rooms are settled (their messages), and how many rooms' visits
        self.settled: dict[str, dict[int, int]] = {}
        self.settled_rooms: dict[int, int] = {}
        self.settled_visits: dict[int, int] = {}
        self.aside: list[indexes.SetAside] = []
        self.before: BeforeChecksums | None = None

    def plan(self) -> MergePlan:
        transport = choose_transport(self.report, self.request.transport)
        if transport not in TRANSPORTS:
            raise DatabaseError(f"unknown transport {transport!r}")
        return MergePlan(inputs=[r.label for r in self.request.databases],
                         transport=transport, tables=[t.name for t in self.request.tables],
                         mirrors=self.mirrors)

    def open(self) -> None:
        self.conn = pg.open_session(self.request.target, role="merge")
        self._runner = PsycopgRunner(self.conn)

    @property
    def runner(self) -> Runner:
        return self._runner

    @property
    def _conn(self) -> pg.PgConn:
        assert self.conn is not None
        return self.conn

    def prepare(self, plan: MergePlan) -> Prepared:
        conn, ctx, request = self._conn, self.ctx, self.request
        names = plan.tables
        if conn.info.server_version >= 140000:
            # a killed client is noticed even during a long statement
            conn.execute("SET client_connection_check_interval = 1000")
        if ctx.mode == "run" and not ctx.locked and not try_merge_lock(conn):
            # the lock session could not take the lock (tcmerge.lock): taken here instead
            raise MergeInProgress("another tcmerge merge or restore is changing this target")
        if ctx.mode != "validate":
            # No other writer until commit: the snapshot, the checksums and the rules all
            # see the same target (SHARE lets readers through and blocks writers).
            conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(
                sql.SQL(", ").join(sql.Identifier(n) for n in names)))
        prepared = Prepared()
        # everything else in the target, before the first write: verify compares with it
        if ctx.recording:
            prepared.fingerprint = catalog_fingerprint(conn, names)
        if ctx.mode == "run":
            jobs.ensure_jobs_table(self._runner)
        # the target as it is before the first row is written: its checksums, taken by a
        # second session while this one reads the rooms (joined before any write)
        before = self.before = BeforeChecksums(conn, request.target, names) if (
            (ctx.recording and request.snapshot) or ctx.mode == "preview"
            or ctx.compares_with_shown or self.mirrors) else None
        create_staging(conn, request.tables)
        reader_cls = TRANSPORTS[plan.transport]
        # source queries that run beside the target's work take turns (see transport.py)
        turn = threading.Lock()
        auths = link_auths(self.report)
        self.readers = [reader_cls(ref, i, conn, turn, auths.get(ref.label))
                        for i, ref in enumerate(request.sources, 1) if i not in self.mirrors]
        rules = self.rules = PgRules(conn, request.tables, plan.inputs)
        for reader in self.readers:
            # each source in one read-only snapshot, kept until all of it is staged:
            # its checksums are those of exactly what is merged
            reader.open()
            if ctx.mode != "validate":
                reader.prepare_checksums(names)
            reader.stage_holders(names)
        rules.target_holders()
        for reader in self.readers:
            reader.load_holders()
        rules.rooms_owners()
        self._settle()
        rules.target_keys()
        if before is not None:
            prepared.target_checksums = before.result()
        self.target_before = prepared.target_checksums
        # the checksums counted the target's rows already
        rules.count_target({t: int(v.split(":", 1)[0])
                            for t, v in prepared.target_checksums.items()})
        if ctx.mode == "run" and request.snapshot:
            # a copy of the tables whose rows the merge changes (and the small ones); the
            # others' new rows are found again by this transaction's id (snapshot.py)
            adapter = PostgresAdapter()
            copied = adapter.snapshot_tables(names)
            prepared.snapshot = take_snapshot(conn, ctx.job_id, copied)
            found_by_id = [n for n in names if n not in copied]
            if found_by_id:
                prepared.inserted_rows = {"xid": adapter.transaction_id(self._runner),
                                          "tables": found_by_id}
        ctx.clock.phase("snapshot")
        self._stage(plan)
        ctx.clock.phase("stage")
        return prepared

    def _settle(self) -> None:
        """The rooms whose every message a source has the target holds already (a merge
        run again) are neither moved nor compared row by row: their digests are
        (rules_pg.settle); so are the rooms whose visits (timelog rows) a source has
        exactly as the target (rules_pg.settle_timelog)."""
        messages = [t for t in self.request.tables if t.name in DATE_COLUMN]
        visits = [t for t in self.request.tables if t.name == "tc_timelog"]
        if not (messages or visits) or not self.readers:
            return
        rules = self.rules
        # each server's encoding, as validation found it (target first)
        encodings = [d.get("encoding") for d in self.report.databases]
        # rows hashed by their types' hash functions where every server can (checksums.py;
        # the target's choice is the rules')
        method = {t.name: RECORD if t.name in rules.hashed_by_type else TEXT
                  for t in messages + visits}
        eligible: list[SourceReader] = []
        windows: set[int] = set()  # the inputs with candidate rooms (rules_pg)
        visited: set[int] = set()
        for reader in self.readers:
            # equal rows have equal text only in one encoding, and only where the source
            # has every column
            if (not encodings or encodings[0] in (None, "SQL_ASCII")
                    or len(encodings) <= reader.inp or encodings[reader.inp] != encodings[0]):
                continue
            eligible.append(reader)
            for name, how in reader.methods(list(method)).items():
                if how != RECORD:
                    method[name] = TEXT
            if (messages and all(for_input(t, reader.inp) is t for t in messages)
                    and rules.settle_candidates(reader.inp)):
                windows.add(reader.inp)
            if (visits and for_input(visits[0], reader.inp) is visits[0]
                    and rules.timelog_candidates(reader.inp)):
                visited.add(reader.inp)
        # one method for the message tables (a room's digests are compared together)
        messages_method = RECORD if all(method[t.name] == RECORD for t in messages) else TEXT
        # first the row at each room's lowest id (a probe per room, where the target would
        # hold it), then every row of the rooms still alike and the visits; the sources'
        # digests are read while the target takes its own (in the background, by copy)
        if windows:
            for reader in eligible:
                if reader.inp in windows:
                    rooms, lows = rules.room_lists(reader.inp, "tcm_w_windows", lows=True)
                    reader.stage_room_digests(room_digest_queries(
                        messages, reader.inp, listed_windows(rooms, lows), messages_method,
                        FIRST_ROW))
            rules.target_room_digests(windows, messages_method, first_rows=True)
            for reader in eligible:
                reader.load_room_digests()
            windows = set(rules.keep_equal(FIRST_ROW_DIGESTS, "tcm_w_windows",
                                            per_window=True))
        if not (windows or visited):
            return
        for reader in eligible:
            queries: list[tuple[str, sql.Composed]] = []
            if reader.inp in windows:
                rooms, _ = rules.room_lists(reader.inp, "tcm_w_windows")
                queries += room_digest_queries(messages, reader.inp, listed_windows(rooms),
                                               messages_method, LISTED)
            if reader.inp in visited:
                rooms, _ = rules.room_lists(reader.inp, "tcm_w_visits")
                queries += room_digest_queries(visits, reader.inp, listed_windows(rooms),
                                               method["tc_timelog"], LISTED)
            if queries:
                reader.stage_room_digests(queries)
        rules.target_room_digests(windows, messages_method)
        rules.target_timelog_digests(visited, method.get("tc_timelog", TEXT))
        for reader in eligible:
            reader.load_room_digests()
        self.settled, self.settled_rooms = rules.settle()
        if visited:
            self.settled["tc_timelog"], self.settled_visits = rules.settle_timelog()
        for reader in eligible:
            # a source whose every room of messages is settled stages little: its
            # checksums start now, beside the target's work, not after its staging
            if self.settled_rooms.get(reader.inp) and not rules.moves_messages(reader.inp):
                reader.send_checksums()

    def _stage(self, plan: MergePlan) -> None:
        conn, request, rules, progress = self._conn, self.request, self.rules, self.ctx.progress
        # Validation writes nothing into the target's tables: every row goes to the TEMP
        # staging tables (a copy rolled back would still grow and lock the live tables).
        direct_ok = {t.name for t in request.tables if self.ctx.mode == "run"
                     and t.name in DIRECT_TABLES and direct_compatible(conn, t)}
        staged: dict[str, dict[int, int]] = {t.name: {} for t in request.tables}
        direct = self.direct = {t: {} for t in direct_ok}
        self.aside = self._set_indexes_aside(sorted(direct_ok))
        for reader in self.readers:
            owned = rules.owned_shared_rooms(reader.inp) \
                if direct_ok & set(DATE_COLUMN) else []
            for table in request.tables:
                # a settled room's messages (visits) are not moved at all
                skip = (self.settled_rooms if table.name in DATE_COLUMN else
                        self.settled_visits if table.name == "tc_timelog" else {}
                        ).get(reader.inp, 0) > 0
                if table.name in direct_ok:
                    if owned and table.name in DATE_COLUMN:
                        # what the analysis needs of the owner's rows of shared rooms,
                        # read beside the copy when a side session is open (the keys of
                        # the staged rows are read in the target)
                        reader.stage_keys(table, in_rooms(table.name, owned))
                    # rows of rooms no other input has (and the owner's rows of shared
                    # rooms in the message tables) go straight into the target table,
                    # where the input has such rooms; settled rooms are shared, so
                    # among the rooms staged, though not moved
                    rooms = rules.staged_rooms(table.name, reader.inp, settled=not skip)
                    direct[table.name][reader.inp] = 0
                    if rules.holds_unstaged_rooms(table.name, reader.inp):
                        shared = rules.staged_rooms(table.name, reader.inp) if skip else rooms
                        direct[table.name][reader.inp] = reader.direct(
                            table, in_rooms(table.name, shared, negate=True), progress)
                    staged[table.name][reader.inp] = reader.stage(
                        table, progress, in_rooms(table.name, rooms))
                else:
                    staged[table.name][reader.inp] = reader.stage(
                        table, progress, except_rooms(table.name, rules.room_lists(
                            reader.inp, SETTLED_IN[table.name])[0]) if skip else None)
            if self.ctx.mode == "run":
                self.staging_marks.append(reader.mark(plan.tables))
            reader.finish()
        rules.moved(staged, direct, self.settled)
        for reader in self.readers:
            reader.load_keys()
            # the sources compute their checksums while the target analyses
            reader.send_checksums()

    def _set_indexes_aside(self, tables: list[str]) -> list[indexes.SetAside]:
        """The indexes of the tables loaded directly, dropped until every row is in,
        where enough rows come in (``indexes.worth_setting_aside``). The rows of settled
        rooms do not come in: a merge run again keeps the indexes."""
        aside = []
        for table in tables:
            settled = self.settled.get(table, {})
            incoming = sum(max(reader.estimated_rows(table) - settled.get(reader.inp, 0), 0)
                           for reader in self.readers)
            if indexes.worth_setting_aside(self.rules.target_counts[table], incoming):
                dropped = indexes.set_aside(self._conn, table)
                if dropped is not None:
                    aside.append(dropped)
        return aside

    def analyse(self) -> Analysis:
        # the analysis and apply sort and hash whole staged tables: enough memory for
        # them not to spill to temporary files (this transaction only; never lowered)
        self._conn.execute(
            "SELECT set_config('work_mem', %s, true) "
            "WHERE pg_size_bytes(current_setting('work_mem')) < pg_size_bytes(%s)",
            (WORK_MEM, WORK_MEM))
        analysis = self.rules.analyse()
        count_mirrors(analysis, self.mirrors)
        labels = [r.label for r in self.request.databases]
        for inp in sorted(set(self.settled_rooms) | set(self.settled_visits)):
            rooms, visits = self.settled_rooms.get(inp, 0), self.settled_visits.get(inp, 0)
            rows = sum(per.get(inp, 0) for name, per in self.settled.items()
                       if name in DATE_COLUMN)
            said = [f"{rooms} room(s) hold exactly messages the target holds: their "
                    f"{rows} row(s)"] if rooms else []
            if visits:
                said.append(f"the {self.settled['tc_timelog'].get(inp, 0)} timelog row(s) of "
                            f"{visits} room(s), exactly the target's")
            if said:
                analysis.findings.append(info(
                    "ROOMS_ALREADY_MERGED",
                    "; ".join(said) + " (compared by digest) are duplicates, not copied",
                    database=labels[inp], count=self.rules.settled_room_count(inp)))
        return analysis

    def source_checksums(self) -> list[dict[str, str]]:
        if self.ctx.mode == "validate":
            return []
        # collected before any prompt: no source session waits on the user
        by_input = {reader.inp: reader.staged_checksums() for reader in self.readers}
        # a source that is the target has the target's checksums
        return [by_input.get(i, self.target_before)
                for i in range(1, len(self.request.sources) + 1)]

    def apply(self, analysis: Analysis) -> Applied:
        conn, ctx, names = self._conn, self.ctx, [t.name for t in self.request.tables]

        def after_messages() -> None:
            ctx.clock.phase("apply")
            for dropped in self.aside:
                ctx.tell(f"index {dropped.table}", self.request.target.label)
                indexes.rebuild(conn, dropped)
            ctx.clock.phase("index")
            for reader, (xmin, _shapes) in zip(self.readers, self.staging_marks, strict=True):
                # what verification compares with the staging snapshot: read while the
                # target repairs the counters (late, and beside one busy core)
                reader.check_unchanged(names, xmin)

        written = self.rules.apply(analysis.counts, after_messages=after_messages)
        return Applied(
            written=written,
            written_while_staging={t: sum(rows.values()) for t, rows in self.direct.items()},
            # ids the database hands out itself continue above the merged ones
            sequences_raised=pg.raise_sequences(conn, names))

    def sources_unchanged(self, before: list[dict[str, str]]) -> list[Finding]:
        names = [t.name for t in self.request.tables]
        found: list[Finding] = []
        for reader, (xmin, shapes) in zip(self.readers, self.staging_marks, strict=True):
            # one checksum pass per source: a cheap proof that nothing changed since the
            # staging snapshot (``before``: its checksums), else the full comparison
            sums = before[reader.inp - 1]
            if not reader.unchanged_since(sums, xmin, shapes):
                found += compare_checksums(reader.ref.label, sums, reader.checksums(names))
        for reader in self.readers:
            reader.close()
        return found

    def commit(self) -> None:
        self._conn.commit()

    def rollback(self) -> None:
        conn = self.conn
        if conn is not None and not conn.closed and not conn.broken:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()

    def record_failure(self, job: jobs.JobRecord) -> bool:
        return jobs.record_failure(self.request.target, job)

    def describe_error(self, exc: BaseException) -> str:
        return pg.wrap(exc, self.request.target, "merging into").message

    def close(self, *, succeeded: bool) -> None:
        if self.before is not None:
            self.before.close()
        for reader in self.readers:
            reader.close()
        if self.conn is not None:
            self.conn.close()


class BeforeChecksums:
    """The target's checksums before the merge writes, taken in the background by a
    second session in the merge transaction's snapshot (``pg_export_snapshot``: the
    tables locked, nothing written yet), so that they cost the merge no time of its own.
    ``result`` waits for them and ends that session: it must come before the merge locks
    a table exclusively (an index set aside), which the session's reads would block."""

    def __init__(self, conn: pg.PgConn, target: DatabaseRef, tables: list[str]) -> None:
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        self.target = target
        self.side = pg.open_session(target, role="checksums", autocommit=True)
        self.found: dict[str, str] | BaseException = {}
        try:
            self.side.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            self.side.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(
                sql.Literal(str(row[0]))))
        except psycopg.Error as exc:
            self.side.close()
            raise pg.wrap(exc, target, "reading") from None
        self.thread = threading.Thread(target=self._take, args=(tables,),
                                       name="tcmerge-target-checksums", daemon=True)
        self.thread.start()

    def _take(self, tables: list[str]) -> None:
        try:
            self.found = table_checksums(self.side, tables)
        except BaseException as exc:  # handed to the merge's thread
            self.found = exc

    def result(self) -> dict[str, str]:
        self.thread.join()  # waits: ``close`` would cancel work still running
        self.side.close()
        if isinstance(self.found, BaseException):
            if isinstance(self.found, psycopg.Error):
                raise pg.wrap(self.found, self.target, "reading the checksums of") from None
            raise self.found
        return self.found

    def close(self) -> None:
        """Stop (a merge failing before ``result``) and end the session."""
        if self.thread.is_alive():
            with contextlib.suppress(psycopg.Error):
                self.side.cancel_safe()
        self.thread.join()
        self.side.close()


def link_auths(report: ValidationReport) -> dict[str, str]:
    """Per source label, how validation decided its dblink connection logs in (the
    decision it warned about, DBLINK_SENDS_PASSWORD, is the one the merge follows)."""
    paths = report.transports.get("dblink", {}).get("sources", [])
    return {str(p["source"]): str(p["auth"]) for p in paths if p.get("auth")}
