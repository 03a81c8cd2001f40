"""The PostgreSQL adapter: facts from the catalogs, privileges with their GRANTs, dblink facts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.schema import CreateTable

from tcmerge.db import APPLICATION_NAME, MERGE_LOCK_KEY
from tcmerge.dialects.base import DialectAdapter, Feeder, ServerFacts, Session
from tcmerge.dialects.postgresql import catalog as cat
from tcmerge.dialects.postgresql.digests import RECORD_DIGEST, TABLE_DIGEST
from tcmerge.dialects.postgresql.fingerprint import catalog_fingerprint
from tcmerge.results import Finding, error, warning
from tcmerge.sqlexec import Runner, SaRunner

#: Session settings under which a row's text is the same in every session (the text
#: digest hashes it; a timestamptz's text depends on TimeZone)
SESSION_SETTINGS = {"DateStyle": "ISO,YMD", "IntervalStyle": "postgres",
                    "extra_float_digits": "3", "TimeZone": "UTC"}
SESSION_OPTIONS = " ".join(f"-c {name}={value}" for name, value in SESSION_SETTINGS.items())

_PREPARER = pg.dialect().identifier_preparer  # type: ignore[no-untyped-call]

#: PostgreSQL server encodings -> Python codecs (for checking a SQL_ASCII source's bytes)
PYTHON_CODECS = {
    "UTF8": "utf-8", "LATIN1": "latin-1", "LATIN2": "iso8859-2", "LATIN9": "iso8859-15",
    "WIN1250": "cp1250", "WIN1251": "cp1251", "WIN1252": "cp1252", "EUC_JP": "euc_jp",
    "SJIS": "shift_jis", "EUC_KR": "euc_kr", "GBK": "gbk", "BIG5": "big5", "KOI8R": "koi8-r",
}

#: dblink functions the merge calls, as regprocedure signatures. Cisco's guide names the
#: first two; the merge engine's cursor loop needs the others (granted to PUBLIC by default).
DBLINK_FUNCTIONS = (
    "dblink_connect(text)",
    "dblink_connect(text, text)",
    "dblink_disconnect(text)",
    "dblink(text, text)",
    "dblink_open(text, text, text)",
    "dblink_fetch(text, text, integer)",
    "dblink_close(text, text)",
)


def quote(name: str) -> str:
    """An identifier quoted by SQLAlchemy's PostgreSQL preparer (only where needed)."""
    return str(_PREPARER.quote(name))


def qualified(schema: str | None, name: str) -> str:
    return f"{quote(schema)}.{quote(name)}" if schema else quote(name)


def visible_table(conn: sa.Connection, table: str) -> str | None:
    """``schema.table`` of the table the session finds through its search_path (as the
    merge and SQLAlchemy's reflection do), or None: what a GRANT for it must name."""
    schema = conn.execute(sa.text(
        "SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid = c.relnamespace WHERE c.oid = to_regclass(:t)"), {"t": quote(table)}).scalar()
    return None if schema is None else qualified(str(schema), table)


@dataclass(frozen=True)
class DblinkFacts:
    """Whether the session's user can use dblink in this database."""

    installed: bool
    schema: str | None
    available: bool  # the extension's files are on the server
    can_create: bool  # the user could CREATE EXTENSION dblink
    missing_execute: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def usable(self) -> bool:
        return self.installed and not self.missing_execute

    def function(self, name: str) -> str:
        """A dblink function name qualified with the extension's schema (quoted)."""
        return qualified(self.schema, name)


class PostgresAdapter(DialectAdapter):
    name = "postgresql"
    supports_server_links = True
    supports_dblink = True
    supports_copy = True
    transactional_ddl = True
    max_identifier_length = 63
    reports_free_space = False
    transports = ("copy", "dblink")
    merge_impl = "tcmerge.merge.pg_merge:PostgresMerge"

    _read_only_option: ClassVar[str] = "-c default_transaction_read_only=on"

    def connect_args(self, *, read_only: bool) -> dict[str, Any]:
        # application_name and client_encoding come from engine_connect_args
        return {"options": self._read_only_option} if read_only else {}

    def engine_connect_args(self, application_name: str) -> dict[str, Any]:
        # UTF8: a SQL_ASCII database (which psycopg would otherwise hand over as bytes)
        # reads as text; invalid bytes are found by validation, not here
        return {"client_encoding": "UTF8", "application_name": application_name}

    def bound_lock_waits(self, conn: sa.Connection, milliseconds: int) -> None:
        conn.execute(sa.text(f"SET LOCAL lock_timeout = {int(milliseconds)}"))

    def server_facts(self, conn: sa.Connection) -> ServerFacts:
        row = conn.execute(sa.text(
            "SELECT current_setting('server_version'), "
            "current_setting('server_version_num')::int, "
            "pg_encoding_to_char(d.encoding), current_database(), current_user, r.rolsuper, "
            "pg_backend_pid(), d.oid::bigint, pg_postmaster_start_time()::text, current_schema(), "
            "current_setting('port'), current_setting('listen_addresses'), "
            "current_setting('ssl'), host(inet_server_addr()) "
            "FROM pg_catalog.pg_database d, pg_catalog.pg_roles r "
            "WHERE d.datname = current_database() AND r.rolname = current_user"
        )).one()
        system_id: str | None = None
        try:
            with conn.begin_nested():
                system_id = str(conn.execute(sa.text(
                    "SELECT system_identifier FROM pg_catalog.pg_control_system()")).scalar())
        except sa.exc.DBAPIError:
            system_id = None
        # system_identifier is shared by physical replicas; the start time tells them apart.
        server_identity = f"postgresql:{system_id or '-'}:{row[8]}"
        return ServerFacts(
            dialect=self.name,
            version=str(row[0]).split()[0],
            version_num=int(row[1]),
            encoding=str(row[2]),
            database=str(row[3]),
            user=str(row[4]),
            superuser=bool(row[5]),
            server_identity=server_identity,
            database_identity=f"{server_identity}:{row[7]}",
            backend_pid=int(row[6]),
            schema=str(row[9]) if row[9] is not None else None,
            details={"port": str(row[10]), "listen_addresses": str(row[11]),
                     "ssl": str(row[12]) == "on", "server_address": row[13]},
        )

    # -- privileges -------------------------------------------------------------------------
    def privilege_findings(self, conn: sa.Connection, facts: ServerFacts, *, database: str,
                           tables: list[str], target: bool) -> list[Finding]:
        findings: list[Finding] = []
        user = quote(facts.user)
        schema = facts.schema
        if schema is None:
            findings.append(error(
                "PRIVILEGE_MISSING", "the session has no current schema (search_path)",
                database=database, hint=f"ALTER ROLE {user} SET search_path = public;"))
            return findings
        if target and not conn.execute(
                sa.text("SELECT has_schema_privilege(:s, 'CREATE')"), {"s": schema}).scalar():
            findings.append(error(
                "PRIVILEGE_MISSING",
                f"{facts.user} may not create tables in schema {schema} (the snapshot "
                "before the merge, and the job table when it is missing)",
                database=database,
                hint=f"GRANT CREATE ON SCHEMA {quote(schema)} TO {user};",
                details={"privilege": "CREATE", "object": schema}))
        if target and not conn.execute(sa.text(
                "SELECT has_database_privilege(current_database(), 'TEMPORARY')")).scalar():
            findings.append(error(
                "PRIVILEGE_MISSING",
                f"{facts.user} may not create temporary tables (the merge stages its inputs "
                "in them)",
                database=database,
                hint=f"GRANT TEMPORARY ON DATABASE {quote(facts.database)} TO {user};",
                details={"privilege": "TEMPORARY", "object": facts.database}))
        wanted = ("SELECT", "INSERT", "UPDATE") if target else ("SELECT",)
        # tables are found as the merge finds them, through the search_path: the first
        # schema of the path (current_schema, e.g. a "$user" schema) need not hold them
        if target and conn.execute(sa.text("SELECT to_regclass(:t) IS NOT NULL"),
                                   {"t": quote("tcmerge_jobs")}).scalar():
            tables = [*tables, "tcmerge_jobs"]  # the job history is written in the merge
        for table in tables:
            name = visible_table(conn, table)
            if name is None:
                continue  # absent: the schema check reports it
            missing = [p for p in wanted if not conn.execute(
                sa.text("SELECT has_table_privilege(:t, :p)"), {"t": name, "p": p}).scalar()]
            if missing:
                findings.append(error(
                    "PRIVILEGE_MISSING",
                    f"{facts.user} lacks {', '.join(missing)} on {table}",
                    database=database, table=table,
                    hint=f"GRANT {', '.join(missing)} ON TABLE {name} TO {user};",
                    details={"privilege": missing, "object": table}))
        return findings

    def missing_table(self, conn: sa.Connection, facts: ServerFacts,
                      finding: Finding) -> Finding:
        # a role whose search_path leaves out the TC tables' schema: say where they are
        # and how to make them visible, instead of suggesting a second, empty TC schema
        rows = conn.execute(sa.text(
            "SELECT n.nspname, has_schema_privilege(n.oid, 'USAGE') "
            "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
            "ON n.oid = c.relnamespace WHERE c.relname = :t AND c.relkind IN ('r', 'p') "
            "AND n.nspname !~ '^pg_(temp|toast)' "
            "ORDER BY n.nspname = 'public' DESC, n.nspname"), {"t": finding.table}).all()
        if not rows:
            return finding
        schemas = [str(r[0]) for r in rows]
        user = quote(facts.user)
        path = conn.execute(sa.text("SELECT current_setting('search_path')")).scalar()
        if not rows[0][1]:
            # on the path or not, a schema the role may not use hides its tables
            return dataclasses.replace(
                finding,
                message=f"table {finding.table} is in schema {schemas[0]}, which "
                        f"{facts.user} may not use (no USAGE)",
                hint=f"GRANT USAGE ON SCHEMA {quote(schemas[0])} TO {user}; (as the schema's "
                     "owner)",
                details={**finding.details, "schemas": schemas, "search_path": path})
        return dataclasses.replace(
            finding,
            message=f"table {finding.table} is not on the search_path of {facts.user} "
                    f"({path}); it exists in schema {', '.join(schemas)}",
            hint=f"ALTER ROLE {user} IN DATABASE {quote(facts.database)} SET "
                 f"search_path = {quote(schemas[0])}; (the schema IM and Presence uses: its "
                 "sessions have the same search_path), then reconnect",
            details={**finding.details, "schemas": schemas, "search_path": path})

    def feeders(self, conn: sa.Connection, tables: list[str]) -> list[Feeder]:
        found: list[Feeder] = []
        params = {"tables": list(tables)}
        # enabled user triggers on INSERT (tgtype bit 4: COPY fires them too) or UPDATE
        # (16: the merge raises tc_rooms' counters); statement triggers too
        for table, name, function, timing in conn.execute(sa.text(
                "SELECT c.relname::text, t.tgname::text, t.tgfoid::regproc::text, "
                "CASE WHEN t.tgtype & 2 = 2 THEN 'BEFORE ' WHEN t.tgtype & 64 = 64 "
                "THEN 'INSTEAD OF ' ELSE 'AFTER ' END || concat_ws(' OR ', "
                "CASE WHEN t.tgtype & 4 = 4 THEN 'INSERT' END, "
                "CASE WHEN t.tgtype & 16 = 16 THEN 'UPDATE' END) "
                "FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' AND t.tgtype & 20 <> 0 "
                "AND c.oid = ANY(SELECT to_regclass(quote_ident(n)) "
                "FROM unnest(CAST(:tables AS text[])) AS n) ORDER BY 1, 2"), params):
            found.append(Feeder("trigger", table, name, detail=f"{timing}, runs {function}()"))
        for table, name in conn.execute(sa.text(
                "SELECT c.relname::text, r.rulename::text FROM pg_rewrite r "
                "JOIN pg_class c ON c.oid = r.ev_class WHERE r.rulename <> '_RETURN' "
                "AND r.ev_enabled <> 'D' AND r.ev_type IN ('2', '3') "
                "AND c.oid = ANY(SELECT to_regclass(quote_ident(n)) "
                "FROM unnest(CAST(:tables AS text[])) AS n) ORDER BY 1, 2"), params):
            found.append(Feeder("rule", table, name, detail="ON INSERT or UPDATE"))
        # identity columns, and sequences a column's default or ownership ties to it
        for table, column, identity, sequence in conn.execute(sa.text(
                "SELECT c.relname::text, a.attname::text, a.attidentity::text, "
                "pg_get_serial_sequence(quote_ident(c.relname), a.attname)::text "
                "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                "WHERE a.attnum > 0 AND NOT a.attisdropped "
                "AND c.oid = ANY(SELECT to_regclass(quote_ident(n)) "
                "FROM unnest(CAST(:tables AS text[])) AS n) "
                "AND (a.attidentity <> '' OR pg_get_serial_sequence(quote_ident(c.relname), "
                "a.attname) IS NOT NULL) ORDER BY 1, 2"), params):
            if identity == "a":
                found.append(Feeder("identity always", table, column, column))
            elif sequence:
                found.append(Feeder("sequence", table, str(sequence), column))
        return found

    def restore_findings(self, conn: sa.Connection, facts: ServerFacts, *, database: str,
                         tables: list[str]) -> list[Finding]:
        # restore empties each table and puts its snapshot back (merge/snapshot.py)
        names = {t: visible_table(conn, t) for t in tables}
        missing = [t for t, name in names.items() if name is not None and not conn.execute(
            sa.text("SELECT has_table_privilege(:t, 'DELETE')"), {"t": name}).scalar()]
        if not missing:
            return []
        return [warning(
            "RESTORE_PRIVILEGE_MISSING",
            f"{facts.user} may merge but could not restore this merge: it lacks DELETE on "
            f"{', '.join(missing)} (restore replaces their rows with the snapshot)",
            database=database,
            hint=f"GRANT DELETE ON TABLE {', '.join(str(names[t]) for t in missing)} TO "
                 f"{quote(facts.user)}; (as the tables' owner), or merge with --no-snapshot",
            details={"privilege": "DELETE", "tables": missing})]

    def dblink_facts(self, conn: sa.Connection, facts: ServerFacts) -> DblinkFacts:
        ext = sa.select(cat.pg_namespace.c.nspname).select_from(
            cat.pg_extension.join(cat.pg_namespace,
                                  cat.pg_namespace.c.oid == cat.pg_extension.c.extnamespace)
        ).where(cat.pg_extension.c.extname == "dblink")
        schema = conn.execute(ext).scalar()
        versions = conn.execute(
            sa.select(cat.pg_available_extension_versions.c.trusted)
            .where(cat.pg_available_extension_versions.c.name == "dblink")).scalars().all()
        available = bool(versions)
        if schema is None:
            can_create = available and (facts.superuser or (
                any(bool(t) for t in versions) and bool(conn.execute(sa.text(
                    "SELECT has_database_privilege(current_database(), 'CREATE')")).scalar())))
            return DblinkFacts(False, None, available, can_create)
        missing = []
        for signature in DBLINK_FUNCTIONS:
            name, args = signature.split("(", 1)
            regproc = f"{qualified(schema, name)}({args}"
            ok = conn.execute(sa.text(
                "SELECT to_regprocedure(:f) IS NOT NULL AND "
                "has_function_privilege(to_regprocedure(:f), 'EXECUTE')"), {"f": regproc}).scalar()
            if not ok:
                missing.append(signature)
        return DblinkFacts(True, str(schema), True, False, tuple(missing))

    # -- pg_hba --------------------------------------------------------------------------------
    def hba_rows(self, conn: sa.Connection) -> list[dict[str, Any]] | None:
        """pg_hba_file_rules as dicts, or None when the user may not read the view."""
        t = cat.pg_hba_file_rules
        try:
            with conn.begin_nested():
                rows = conn.execute(sa.select(
                    t.c.line_number, t.c.type, t.c.database, t.c.user_name, t.c.address,
                    t.c.netmask, t.c.auth_method, t.c.error).order_by(t.c.line_number)).all()
        except sa.exc.DBAPIError:
            return None
        return [dict(r._mapping) for r in rows]

    def role_memberships(self, conn: sa.Connection, user: str, roles: set[str]) -> set[str]:
        """The roles among ``roles`` that ``user`` is a member of (directly or not)."""
        member = set()
        for role in sorted(roles):
            if conn.execute(sa.text(
                    "SELECT to_regrole(:r) IS NOT NULL AND to_regrole(:u) IS NOT NULL "
                    "AND pg_has_role(to_regrole(:u), to_regrole(:r), 'MEMBER')"),
                    {"r": quote(role), "u": quote(user)}).scalar():
                member.add(role)
        return member

    # -- sessions, sizes, digests ----------------------------------------------------------------
    def merge_in_progress(self, conn: sa.Connection) -> bool | None:
        return bool(self.merge_lock_holders(conn))

    def table_visible(self, name: str) -> sa.Executable:
        return sa.select(sa.func.to_regclass(sa.func.quote_ident(name)).is_not(None))

    def create_if_absent(self, table: sa.Table) -> sa.Executable:
        # IF NOT EXISTS alone looks only in the schema a new table goes to: callers ask
        # ``table_visible`` first, so that a table elsewhere on the search path counts
        return CreateTable(table, if_not_exists=True)

    def unique_key_query(self, table: str, columns: tuple[str, ...]) -> sa.Executable:
        return sa.text(
            "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = "
            "to_regclass(quote_ident(:table)) AND i.indisunique AND i.indpred IS NULL "
            "AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a "
            "WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)) = "
            "CAST(:columns AS text[]))").bindparams(table=table, columns=sorted(columns))

    def room_id_index_query(self, table: str, room: str) -> sa.Executable:
        return sa.text(
            "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am am ON am.oid = c.relam WHERE i.indrelid = "
            "to_regclass(quote_ident(:table)) AND am.amname = 'btree' AND i.indpred IS NULL "
            "AND i.indexprs IS NULL AND i.indnatts >= 2 AND (SELECT a.attname::text FROM "
            "pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = i.indkey[0]) = :room "
            "AND (SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = i.indrelid "
            "AND a.attnum = i.indkey[1]) = 'msg_id')").bindparams(table=table, room=room)

    session_merge_lock = True

    def try_merge_lock(self, conn: sa.Connection, *, exclusive: bool) -> bool:
        # a session-level advisory lock: it outlives the transaction that takes it, so the
        # lock session holds nothing else (no open transaction, no table lock)
        take = sa.func.pg_try_advisory_lock if exclusive else sa.func.pg_try_advisory_lock_shared
        taken = bool(conn.execute(sa.select(take(MERGE_LOCK_KEY))).scalar())
        conn.commit()
        return taken

    def merge_lock_holders(self, conn: sa.Connection) -> set[str]:
        # a bigint advisory key shows in pg_locks as classid (high half), objid (low half)
        rows = conn.execute(sa.text(
            "SELECT DISTINCT l.mode FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND d.datname = current_database() "
            "AND l.classid = :high AND l.objid = :low AND l.objsubid = 1 AND l.granted "
            "AND l.pid <> pg_backend_pid()"),
            {"high": MERGE_LOCK_KEY >> 32, "low": MERGE_LOCK_KEY & 0xFFFFFFFF}).scalars()
        return {"shared" if mode == "ShareLock" else "exclusive" for mode in rows}

    def other_sessions(self, conn: sa.Connection, exclude: set[int]) -> list[Session] | None:
        a = cat.pg_stat_activity
        # pg_stat_activity is a snapshot per transaction: read it in a fresh one.
        conn.rollback()
        query = sa.select(a.c.pid, a.c.usename, a.c.application_name,
                          sa.func.host(a.c.client_addr), a.c.state).where(
            a.c.datname == sa.func.current_database(),
            a.c.backend_type == "client backend",
            a.c.pid != sa.func.pg_backend_pid(),
            # tcmerge's own sessions, also those of a killed run that the server has not
            # reaped yet; another merge is refused by the merge lock (MERGE_IN_PROGRESS)
            sa.or_(a.c.application_name.is_(None),
                   sa.and_(a.c.application_name != APPLICATION_NAME,
                           ~a.c.application_name.startswith(APPLICATION_NAME + "-"))),
        )
        if exclude:
            query = query.where(a.c.pid.not_in(sorted(exclude)))
        rows = conn.execute(query.order_by(a.c.pid)).all()
        return [Session(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def table_bytes(self, conn: sa.Connection, tables: list[str]) -> dict[str, int]:
        sizes = {}
        for table in tables:
            size = conn.execute(sa.text(
                "SELECT pg_total_relation_size(to_regclass(:t))"), {"t": quote(table)}).scalar()
            if size is not None:
                sizes[table] = int(size)
        return sizes

    def checksum_statement(self, table: sa.Table) -> sa.TextClause:
        return sa.text(TABLE_DIGEST.format(quote(table.name)))

    def digest_statement(self, table: str, method: str) -> sa.Executable:
        return sa.text((RECORD_DIGEST if method == "record" else TABLE_DIGEST).format(
            quote(table)))

    def digest_connect_args(self) -> dict[str, Any]:
        return {"options": SESSION_OPTIONS}

    def consistent_read(self, conn: sa.Connection) -> None:
        conn.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        self.digest_session(SaRunner(conn))

    def digest_session(self, run: Runner) -> None:
        # the client's PGTZ / PGDATESTYLE outrank connection options: set them here too
        for name, value in SESSION_SETTINGS.items():
            run.execute(sa.select(sa.func.set_config(name, value, True)))

    def catalog_fingerprint(self, conn: sa.Connection, merged: list[str], *,
                            rows: bool | None = None) -> dict[str, Any] | None:
        raw = conn.connection.driver_connection  # the same session and transaction
        assert raw is not None
        return catalog_fingerprint(raw, merged, rows=rows)

    def lock_for_restore(self, run: Runner) -> bool:
        return bool(run.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(MERGE_LOCK_KEY))))

    def tables_without_delete(self, run: Runner, tables: list[str]) -> list[str]:
        rows = run.rows(sa.text(
            "SELECT n, quote_ident(s.nspname) || '.' || quote_ident(c.relname) "
            "FROM unnest(CAST(:tables AS text[])) AS n JOIN pg_class c "
            "ON c.oid = to_regclass(quote_ident(n)) JOIN pg_namespace s "
            "ON s.oid = c.relnamespace WHERE NOT has_table_privilege(c.oid, 'DELETE')"
        ).bindparams(tables=list(tables)))
        return [str(r[1]) for r in rows]

    def missing_rows(self, run: Runner, before: str, table: str,
                     ignore: tuple[str, ...]) -> int:
        columns = [str(r[0]) for r in run.rows(sa.text(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = "
            "to_regclass(quote_ident(:t)) AND attnum > 0 AND NOT attisdropped "
            "ORDER BY attnum").bindparams(t=before)) if r[0] not in ignore]
        cols = ", ".join(quote(c) for c in columns)
        return int(run.scalar(sa.text(
            f"SELECT count(*) FROM (SELECT {cols} FROM {quote(before)} EXCEPT ALL "
            f"SELECT {cols} FROM {quote(table)}) AS d")) or 0)

    # -- the rows one transaction wrote ---------------------------------------------------
    # A row version's xmin is the 32-bit id of the transaction that wrote it, kept when the
    # row is frozen (9.4+) and by VACUUM FULL and CLUSTER; an UPDATE writes a new version
    # with its own. ``txid_current()`` is the same id with its epoch: it tells the merge's
    # transaction apart from any other for 2^31 transactions (restore checks the distance).

    def snapshot_tables(self, tables: list[str]) -> list[str]:
        # tc_rooms, whose counters a merge raises in rows the target held (rule 4), and
        # tc_users (one row per member: small), so that a forced restore puts edited
        # members back; of the others (messages, time log) a merge only inserts rows
        return [t for t in tables if t in ("tc_rooms", "tc_users")]

    def transaction_id(self, run: Runner) -> int:
        return int(run.scalar(sa.text("SELECT txid_current()")))

    def transactions_since(self, run: Runner, xid: int) -> int:
        return int(run.scalar(sa.text("SELECT txid_current() - :x").bindparams(x=xid)))

    @staticmethod
    def _written_by(xid: int) -> str:
        return f"t.xmin = '{int(xid) % 2**32}'::xid"

    def transaction_rows(self, table: str, xid: int) -> sa.Executable:
        return sa.text(f"SELECT count(*) FROM {quote(table)} AS t WHERE "
                       + self._written_by(xid))

    def digest_without_transaction(self, table: str, method: str, xid: int) -> sa.Executable:
        return sa.text((RECORD_DIGEST if method == "record" else TABLE_DIGEST).format(
            quote(table)) + f" WHERE NOT ({self._written_by(xid)})")

    def delete_transaction_rows(self, table: str, xid: int, *, later: bool) -> sa.Executable:
        cond = self._written_by(xid)
        if later:  # age() counts back from now: a younger row was written after xid
            cond += f" OR age(t.xmin) < age('{int(xid) % 2**32}'::xid)"
        return sa.text(f"DELETE FROM {quote(table)} AS t WHERE {cond}")

    # -- encodings ----------------------------------------------------------------------------
    def encoding_scan_codec(self, source: ServerFacts, target: ServerFacts) -> str | None:
        # A SQL_ASCII database stores any bytes unchecked: they must decode in the
        # target's encoding. Any other source's characters are valid, and the server
        # converts them on the way: to UTF8 always, to another encoding only those it
        # has (a UTF8 source's emoji has no LATIN1 equivalent: the run would fail).
        if target.encoding in ("SQL_ASCII", source.encoding):
            return None
        if source.encoding != "SQL_ASCII" and target.encoding == "UTF8":
            return None
        if source.encoding != "SQL_ASCII" and source.encoding not in PYTHON_CODECS:
            return "?"
        return PYTHON_CODECS.get(target.encoding, "?")

    def stored_codec(self, source: ServerFacts) -> str | None:
        return None if source.encoding == "SQL_ASCII" else PYTHON_CODECS.get(source.encoding)

    def conversion_problem(self, conn: sa.Connection, source: ServerFacts,
                           target: ServerFacts) -> str | None:
        if "SQL_ASCII" in (source.encoding, target.encoding) \
                or source.encoding == target.encoding:
            return None
        # the source server converts what it sends (client_encoding, dblink's too):
        # convert() finds its conversion the same way
        try:
            with conn.begin_nested():
                conn.execute(sa.select(sa.func.convert(
                    sa.literal(b"A", pg.BYTEA), sa.literal(source.encoding),
                    sa.literal(target.encoding))))
        except sa.exc.DBAPIError as exc:
            return str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        return None

    def raw_bytes(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        # conversion to SQL_ASCII is no conversion: the stored bytes as bytea
        return sa.func.convert_to(expr, sa.literal("SQL_ASCII"), type_=pg.BYTEA)

    def has_high_bytes(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        # byte pairs in hex: a pair starting with 8..f is a byte >= 0x80
        hexed = sa.func.encode(self.raw_bytes(expr), sa.literal("hex"), type_=sa.Text)
        return hexed.regexp_match("^(..)*[89a-f]")

