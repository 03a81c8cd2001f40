"""The Oracle adapter (python-oracledb thin mode): dictionary facts, link privileges, quota."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import oracle

from tcmerge.dialects.base import DialectAdapter, Feeder, ServerFacts, Session
from tcmerge.dialects.oracle import dictionary as dic
from tcmerge.dialects.oracle.ddl import create_if_absent
from tcmerge.results import Finding, error
from tcmerge.schema import tc
from tcmerge.sqlexec import Runner

_PREPARER = oracle.dialect().identifier_preparer  # type: ignore[no-untyped-call]

#: privilege sets that allow a link: a private one first, a public one only when it must
PRIVATE_LINK = frozenset({"CREATE DATABASE LINK"})
PUBLIC_LINK = frozenset({"CREATE PUBLIC DATABASE LINK", "DROP PUBLIC DATABASE LINK"})


def link_kind(privileges: set[str] | frozenset[str]) -> str | None:
    """"private", "public" or None: which database link the privileges allow."""
    if privileges >= PRIVATE_LINK:
        return "private"
    if privileges >= PUBLIC_LINK:
        return "public"
    return None


def quote(name: str) -> str:
    return str(_PREPARER.quote(name))


class OracleAdapter(DialectAdapter):
    name = "oracle"
    supports_server_links = True
    supports_dblink = False
    supports_copy = False
    transactional_ddl = False  # DDL commits: links and staging tables live outside the merge
    max_identifier_length = 128  # 30 before 12.2: link names are kept below 30
    reports_free_space = True
    transports = ("dblink",)
    merge_impl = "tcmerge.merge.oracle_merge:OracleMerge"

    def begin_session(self, conn: sa.Connection, *, read_only: bool) -> None:
        if read_only:
            conn.execute(sa.text("SET TRANSACTION READ ONLY"))

    def server_facts(self, conn: sa.Connection) -> ServerFacts:
        row = conn.execute(sa.text(
            "SELECT sys_context('USERENV', 'DBID'), sys_context('USERENV', 'CON_NAME'), "
            "sys_context('USERENV', 'SESSION_USER'), sys_context('USERENV', 'CURRENT_SCHEMA'), "
            "sys_context('USERENV', 'SID'), sys_context('USERENV', 'DB_NAME') FROM dual"
        )).one()
        version = conn.execute(
            sa.select(dic.product_component_version.c.version)
            .where(dic.product_component_version.c.product.like("Oracle%"))
        ).scalar() or "?"
        charset = conn.execute(
            sa.select(dic.nls_database_parameters.c.value)
            .where(dic.nls_database_parameters.c.parameter == "NLS_CHARACTERSET")
        ).scalar() or "?"
        dba = bool(conn.execute(sa.select(sa.func.count()).select_from(dic.session_roles)
                                .where(dic.session_roles.c.role == "DBA")).scalar())
        server_identity = f"oracle:{row[0]}:{row[1]}"
        return ServerFacts(
            dialect=self.name,
            version=str(version),
            version_num=int(str(version).split(".")[0]) if str(version)[:1].isdigit() else 0,
            encoding=str(charset),
            database=str(row[5]),
            user=str(row[2]),
            superuser=dba,
            server_identity=server_identity,
            database_identity=f"{server_identity}:{row[3]}",
            backend_pid=int(row[4]) if row[4] is not None else None,
            schema=str(row[3]),
        )

    def session_privileges(self, conn: sa.Connection) -> set[str]:
        return {str(p) for p in conn.execute(sa.select(dic.session_privs.c.privilege)).scalars()}

    def privilege_findings(self, conn: sa.Connection, facts: ServerFacts, *, database: str,
                           tables: list[str], target: bool) -> list[Finding]:
        privileges = self.session_privileges(conn)
        user = quote(facts.user)
        findings: list[Finding] = []
        if target:
            if "CREATE TABLE" not in privileges:
                findings.append(error("PRIVILEGE_MISSING",
                                      f"{facts.user} may not create tables (staging)",
                                      database=database, hint=f"GRANT CREATE TABLE TO {user};"))
            if link_kind(privileges) is None:
                findings.append(error(
                    "PRIVILEGE_MISSING",
                    f"{facts.user} may create no database link to read the sources",
                    database=database,
                    hint=f"GRANT CREATE DATABASE LINK TO {user}; (or, as Cisco's guide says: "
                         f"GRANT CREATE PUBLIC DATABASE LINK, DROP PUBLIC DATABASE LINK TO "
                         f"{user};)"))
            if "UNLIMITED TABLESPACE" not in privileges:
                tablespace = conn.execute(sa.select(dic.user_users.c.default_tablespace)).scalar()
                quota = conn.execute(
                    sa.select(dic.user_ts_quotas.c.max_bytes)
                    .where(dic.user_ts_quotas.c.tablespace_name == tablespace)).scalar()
                if quota is None or quota == 0:
                    findings.append(error(
                        "PRIVILEGE_MISSING",
                        f"{facts.user} has no quota on its tablespace {tablespace}",
                        database=database,
                        hint=f"ALTER USER {user} QUOTA UNLIMITED ON {quote(str(tablespace))};"))
        return findings

    def feeder_queries(self, tables: list[str]) -> dict[str, sa.Select[Any]]:
        """The dictionary queries ``feeders`` runs (compiled offline by the tests)."""
        names = [t.upper() for t in tables]  # unquoted names: upper-cased in the dictionary
        trig, ident = dic.user_triggers, dic.user_tab_identity_cols
        # enabled triggers that fire on INSERT or UPDATE of a merged table (the merge
        # inserts rows and raises tc_rooms' counters)
        return {
            "triggers": sa.select(trig.c.table_name, trig.c.trigger_name, trig.c.trigger_type,
                                  trig.c.triggering_event)
            .where(trig.c.table_name.in_(names), trig.c.base_object_type == "TABLE",
                   trig.c.status == "ENABLED",
                   sa.or_(trig.c.triggering_event.like("%INSERT%"),
                          trig.c.triggering_event.like("%UPDATE%")))
            .order_by(trig.c.table_name, trig.c.trigger_name),
            "identities": sa.select(ident.c.table_name, ident.c.column_name,
                                    ident.c.generation_type, ident.c.sequence_name)
            .where(ident.c.table_name.in_(names))
            .order_by(ident.c.table_name, ident.c.column_name),
        }

    def feeders(self, conn: sa.Connection, tables: list[str]) -> list[Feeder]:
        queries = self.feeder_queries(tables)
        found: list[Feeder] = []
        for table, name, timing, events in conn.execute(queries["triggers"]):
            table, name = str(table).lower(), str(name)
            found.append(Feeder("trigger", table, name, detail=f"{timing} {events}",
                                remedy=f"ALTER TRIGGER {quote(name)} DISABLE; merge; then "
                                       f"ALTER TRIGGER {quote(name)} ENABLE"))
        version = conn.dialect.server_version_info or (0,)
        if int(version[0]) < 12:
            return found  # identity columns came with Oracle 12c
        for table, column, generation, sequence in conn.execute(queries["identities"]):
            table, column = str(table).lower(), str(column).lower()
            remedy = (f"ALTER TABLE {table} MODIFY {column} GENERATED BY DEFAULT AS IDENTITY "
                      "(START WITH LIMIT VALUE)")
            if generation == "ALWAYS":
                found.append(Feeder("identity always", table, column, column, remedy=remedy))
            else:
                found.append(Feeder("identity", table, str(sequence), column,
                                    remedy=remedy + ", after the merge"))
        return found

    def catalog_fingerprint(self, conn: sa.Connection, merged: list[str], *,
                            rows: bool | None = None) -> dict[str, Any] | None:
        from tcmerge.dialects.oracle.fingerprint import catalog_fingerprint

        return catalog_fingerprint(conn, merged, rows=rows)

    def table_visible(self, name: str) -> sa.Executable:
        # the model's names are unquoted, so the dictionary holds them upper-cased
        return sa.text("SELECT count(*) FROM user_tables WHERE table_name = :name"
                       ).bindparams(name=name.upper())

    def create_if_absent(self, table: sa.Table) -> sa.Executable:
        return create_if_absent(table)

    def other_sessions(self, conn: sa.Connection, exclude: set[int]) -> list[Session] | None:
        s = dic.v_session
        query = sa.select(s.c.sid, s.c.username, s.c.program, s.c.machine, s.c.status).where(
            s.c.schemaname == sa.func.sys_context("USERENV", "CURRENT_SCHEMA"),
            s.c.type == "USER",
            s.c.sid != sa.func.sys_context("USERENV", "SID"),
        )
        if exclude:
            query = query.where(s.c.sid.not_in(sorted(exclude)))
        try:
            with conn.begin_nested():
                rows = conn.execute(query).all()
        except sa.exc.DBAPIError:
            return None  # v$session is not readable for this user
        return [Session(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def table_bytes(self, conn: sa.Connection, tables: list[str]) -> dict[str, int]:
        seg, lob = dic.user_segments, dic.user_lobs
        sizes: dict[str, int] = {}
        for table in tables:
            name = table.upper()
            lob_segments = sa.select(lob.c.segment_name).where(lob.c.table_name == name)
            total = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(seg.c.bytes), 0)).where(
                    sa.or_(seg.c.segment_name == name, seg.c.segment_name.in_(lob_segments)))
            ).scalar()
            sizes[table] = int(total or 0)
        return sizes

    def free_bytes(self, conn: sa.Connection) -> int | None:
        q = dic.user_ts_quotas
        tablespace = sa.select(dic.user_users.c.default_tablespace).scalar_subquery()
        row = conn.execute(sa.select(q.c.bytes, q.c.max_bytes)
                           .where(q.c.tablespace_name == tablespace)).first()
        if row is None or row[1] is None or int(row[1]) < 0:
            return None  # unlimited quota: the tablespace's free space is a DBA view
        return int(row[1]) - int(row[0] or 0)

    def digest_statement(self, table: str, method: str) -> sa.Executable:
        return self.checksum_statement(tc.metadata.tables[table])

    def consistent_read(self, conn: sa.Connection) -> None:
        conn.execute(sa.text("SET TRANSACTION READ ONLY"))

    def lock_for_restore(self, run: Runner) -> bool:
        # the table a running merge holds in EXCLUSIVE mode in its lock session
        try:
            run.execute(sa.text(f"LOCK TABLE {quote('tcmerge_merge_lock')} IN EXCLUSIVE "
                                "MODE NOWAIT"))
        except sa.exc.DBAPIError as exc:
            if "ORA-00054" in str(exc.orig):
                return False
            raise
        return True

    def missing_rows(self, run: Runner, before: str, table: str,
                     ignore: tuple[str, ...]) -> int:
        # Oracle has no EXCEPT ALL before 21c and compares no LOB in a set operation: the
        # rows of each side are grouped (a LOB by its length and first 1000 characters,
        # as the checksums take it) and the groups matched null-safely (DECODE)
        columns = [c for c in tc.metadata.tables[table].columns if c.name not in ignore]

        def key(column: sa.Column[Any], alias: str) -> str:
            ref = f"{alias}.{quote(column.name)}"
            if isinstance(column.type, sa.Text):
                return f"DBMS_LOB.GETLENGTH({ref}) || ':' || DBMS_LOB.SUBSTR({ref}, 1000, 1)"
            return ref

        def groups(name: str, alias: str) -> str:
            keys = [key(c, alias) for c in columns]
            return (f"SELECT {', '.join(f'{k} AS k{i}' for i, k in enumerate(keys))}, "
                    f"COUNT(*) AS n FROM {quote(name)} {alias} GROUP BY {', '.join(keys)}")

        match = " AND ".join(f"DECODE(a.k{i}, b.k{i}, 1, 0) = 1" for i in range(len(columns)))
        return int(run.scalar(sa.text(
            f"SELECT NVL(SUM(a.n - NVL(b.n, 0)), 0) FROM ({groups(before, 's')}) a "
            f"LEFT JOIN ({groups(table, 't')}) b ON {match} "
            "WHERE b.n IS NULL OR b.n < a.n")) or 0)

    def checksum_statement(self, table: sa.Table) -> sa.TextClause:
        # Order-independent: the sum over rows of per-column ORA_HASHes (seeded by position).
        # ORA_HASH takes no LOB: a LOB contributes its length and its first 1000 characters.
        terms = []
        for seed, column in enumerate(table.columns, start=1):
            ref = f"x.{quote(column.name)}"
            if isinstance(column.type, sa.Text):
                ref = f"DBMS_LOB.GETLENGTH({ref}) || ':' || DBMS_LOB.SUBSTR({ref}, 1000, 1)"
            terms.append(f"NVL(ORA_HASH({ref}, 4294967295, {seed}), 7)")
        return sa.text(
            f"SELECT COUNT(*), TO_CHAR(NVL(SUM({' + '.join(terms)}), 0)) "
            f"FROM {quote(table.name)} x"
        )
