"""Oracle: the merge's helper objects and their statements, as SQLAlchemy constructs.

Oracle DDL commits, so the order is: the merge lock (a second session), leftovers
of killed runs removed, database links made, staging tables made and filled with
``INSERT /*+ APPEND */ ... SELECT ... FROM tc_x@link`` (LOB columns cannot be
selected over a link, ORA-22992, but INSERT ... SELECT moves them inside the
servers), the links dropped, the empty work and snapshot tables made; then the
merge transaction (``tcmerge.merge.core``); then the staging and work
tables dropped (also after a failure).

Every object a run makes is named ``tcm_<token>_...`` (``<token>``: the 8 hex
digits of the job id), at most 30 characters (Oracle before 12.2); unquoted
lower-case names, which Oracle stores upper-case (``TCM_AB12CD34_S_TC_ROOMS``).
Snapshots are named ``tcmsnap_<token>_<table>`` (kept after a successful run).

The link's password is never part of SQL text: the link DDL is built server-side
from a bind variable (``tcmerge.dialects.oracle.ddl.CreateDatabaseLink`` through
``tcmerge.links.plan_oracle_link``).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import oracle
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import TableClause

from tcmerge.dialects.oracle.ddl import create_if_absent
from tcmerge.schema.bookkeeping import tcmerge_jobs, tcmerge_merge_lock
from tcmerge.schema.types import VarString

PREFIX = "TCM_"
SNAPSHOT_PREFIX = "TCMSNAP_"
#: Oracle before 12.2 accepts 30-character identifiers; every name a run makes fits.
MAX_NAME = 30
#: a public TCM_ link (which may belong to a merge into another schema) is removed as a
#: leftover only when it is older than this many days
PUBLIC_LINK_MAX_AGE_DAYS = 1

ORACLE = oracle.dialect()  # type: ignore[no-untyped-call]
_PREPARER = ORACLE.identifier_preparer


def quote(name: str) -> str:
    """An identifier as the Oracle dialect writes it (a model column's forced quoting kept)."""
    return str(_PREPARER.quote(name))


def compile_oracle(element: sa.ClauseElement, **kw: Any) -> str:
    """The Oracle text of a statement (bind parameters stay ``:name``)."""
    return str(element.compile(dialect=ORACLE, **kw))


class AtLink(TableClause):
    """``table@link``: a table read through an Oracle database link."""

    inherit_cache = False

    def __init__(self, name: str, link: str, *columns: sa.ColumnClause[Any]) -> None:
        super().__init__(name, *columns)
        self.link = link


@compiles(AtLink, "oracle")
def _at_link_oracle(element: AtLink, compiler: SQLCompiler, **kw: Any) -> str:
    preparer = compiler.preparer
    return f"{preparer.quote(element.name)}@{preparer.quote(element.link)}"


@compiles(AtLink)
def _at_link_default(element: AtLink, compiler: SQLCompiler, **kw: Any) -> str:
    raise sa.exc.CompileError("database links (table@link) exist only on Oracle")


# -- names ------------------------------------------------------------------------------------
def job_token(job_id: str) -> str:
    """The job id's random part (8 hex digits): ties every object to its run."""
    return job_id.rsplit("-", 1)[-1].lower()


def _name(*parts: str) -> str:
    name = "_".join(parts).lower()
    if len(name) > MAX_NAME:
        raise ValueError(f"Oracle name too long: {name}")
    return name


def link_name(token: str, inp: int) -> str:
    return _name("tcm", token, f"l{inp}").upper()


#: short forms keep every staging name within 30 characters
_SHORT = {"tc_msgarchive": "arch", "tc_messages": "msg", "tc_timelog": "timelog",
          "tc_rooms": "rooms", "tc_users": "users", "jm": "jm", "aft_log": "aft"}


def staging_table_name(token: str, table: str) -> str:
    return _name("tcm", token, "s", _SHORT[table])


def work_table_name(token: str, work: str) -> str:
    return _name("tcm", token, "w", work)


def snapshot_table_name(token: str, table: str) -> str:
    return _name("tcmsnap", token, _SHORT[table])


# -- links ------------------------------------------------------------------------------------
def drop_link(link: str) -> sa.TextClause:
    return sa.text("BEGIN EXECUTE IMMEDIATE 'DROP DATABASE LINK ' "
                   "|| DBMS_ASSERT.SIMPLE_SQL_NAME(:link); END;").bindparams(link=link)


# -- staging ----------------------------------------------------------------------------------
def staging_table(model: sa.Table, token: str, metadata: sa.MetaData) -> sa.Table:
    """A plain table (not temporary: DDL commits anyway) with ``inp`` and the model's columns.

    Nullable and as wide as the model, so that every source row lands (validation
    reports rows that break the model before the merge).
    """
    columns: list[sa.Column[Any]] = [sa.Column("inp", sa.Numeric(5, 0), nullable=False)]
    for col in model.columns:
        kind = col.type
        columns.append(sa.Column(col.name, kind if not isinstance(kind, VarString)
                                 else VarString(kind.length or 4000), nullable=True,
                                 quote=getattr(col.name, "quote", None)))
    return sa.Table(staging_table_name(token, model.name), metadata, *columns)


def remote(model: sa.Table, link: str) -> Any:
    # the model's names are quoted_name objects: forced quoting ("start", "end") is kept
    columns: list[sa.ColumnClause[Any]] = [sa.column(c.name) for c in model.columns]
    return AtLink(model.name, link, *columns).alias("r")


def stage_over_link(model: sa.Table, staging: sa.Table, link: str, inp: int) -> sa.Insert:
    """INSERT /*+ APPEND */ INTO staging (inp, cols) SELECT <inp>, r.cols FROM table@link r.

    The input number is a literal (a constant of the run), the rest identifiers. A
    direct-path insert must be committed before the table is read again (ORA-12838):
    the executor commits after each one. Should Oracle run it as a conventional insert
    (it may, silently, for a distributed statement) the rows are the same.
    """
    src = remote(model, link)
    # a column this source lacks (``schema.merge_tables``) stays NULL in its rows
    names = [c.name for c in model.columns if inp not in c.info.get("absent", ())]
    select = sa.select(sa.literal_column(str(int(inp)), sa.Integer()).label("inp"),
                       *(src.c[n] for n in names))
    return (sa.insert(staging).prefix_with("/*+ APPEND */")
            .from_select(["inp", *names], select))


# -- lock, jobs -------------------------------------------------------------------------------
def ensure_lock_table() -> sa.TextClause:
    return create_if_absent(tcmerge_merge_lock)


def ensure_jobs_table() -> sa.TextClause:
    return create_if_absent(tcmerge_jobs)


def lock_merge() -> sa.TextClause:
    """One merge at a time per target: an exclusive lock on tcmerge_merge_lock, NOWAIT.

    Taken in a session of its own that does nothing else, so that the DDL commits of
    the merge session do not release it; it lasts until that session rolls back or
    dies (a killed tcmerge). A second merge gets ORA-00054 at once: MERGE_IN_PROGRESS.
    """
    return sa.text(f"LOCK TABLE {quote(tcmerge_merge_lock.name)} IN EXCLUSIVE MODE NOWAIT")


def lock_tables(tables: list[str]) -> sa.TextClause:
    """LOCK TABLE the merged tables IN SHARE MODE: the first statement of the merge
    transaction (as pg_merge.py on PostgreSQL). No other writer until COMMIT or ROLLBACK,
    so the checksums, the snapshot, the analysis and the inserts all see one target;
    readers pass. Not DDL: it neither commits nor ends the transaction."""
    return sa.text(f"LOCK TABLE {', '.join(quote(t) for t in tables)} IN SHARE MODE")


#: ORA-00054: resource busy and acquire with NOWAIT specified
LOCK_BUSY = 54


def lock_target() -> sa.TextClause:
    """The DBMS_LOCK alternative (needs EXECUTE ON DBMS_LOCK, which users rarely have);
    kept for sites that prefer it. The merge uses ``lock_merge``."""
    return sa.text(
        "DECLARE h VARCHAR2(128); r INTEGER; BEGIN "
        "DBMS_LOCK.ALLOCATE_UNIQUE('TCMERGE_MERGE', h); "
        "r := DBMS_LOCK.REQUEST(h, DBMS_LOCK.X_MODE, 0, TRUE); "
        ":result := r; END;"
    ).bindparams(sa.bindparam("result", type_=sa.Integer(), isoutparam=True))


# -- leftovers --------------------------------------------------------------------------------
def leftover_objects() -> sa.Select[Any]:
    """Links and staging tables left by a killed run (dropped before the next merge)."""
    tables: Any = sa.select(sa.literal("TABLE").label("kind"),
                            sa.column("table_name").label("name")).select_from(
        sa.table("user_tables", sa.column("table_name"))).where(
        sa.column("table_name").like(PREFIX + "%"))
    links: Any = sa.select(sa.literal("LINK").label("kind"), sa.column("db_link").label("name")
                           ).select_from(sa.table("user_db_links", sa.column("db_link"))).where(
        sa.column("db_link").like(PREFIX + "%"))
    return sa.select(sa.union_all(tables, links).subquery())


def drop_leftovers() -> sa.TextClause:
    """Drop what killed runs left: run only while holding the merge lock.

    Every live run holds the lock from before it creates anything until after it has
    dropped everything, so under the lock every ``TCM_`` table and private ``TCM_``
    link of this schema is a leftover. Public links are shared by the whole database
    and cannot be tied to a schema: a ``TCM_`` public link is dropped only when older
    than ``PUBLIC_LINK_MAX_AGE_DAYS`` (and only if this user may drop public links).
    Snapshot tables (``TCMSNAP_``) of a run that did not commit (no succeeded or
    restored job with their token) are dropped too: tcmerge_jobs must exist first
    (``ensure_jobs_table``). ``_`` is escaped in the patterns.
    """
    return sa.text(
        "DECLARE no_priv EXCEPTION; PRAGMA EXCEPTION_INIT(no_priv, -1031); BEGIN "
        "FOR r IN (SELECT table_name FROM user_tables WHERE table_name LIKE 'TCM\\_%' "
        "ESCAPE '\\') LOOP EXECUTE IMMEDIATE 'DROP TABLE ' "
        "|| DBMS_ASSERT.ENQUOTE_NAME(r.table_name, FALSE) || ' PURGE'; END LOOP; "
        "FOR r IN (SELECT db_link FROM user_db_links WHERE db_link LIKE 'TCM\\_%' "
        "ESCAPE '\\') LOOP EXECUTE IMMEDIATE 'DROP DATABASE LINK ' "
        "|| DBMS_ASSERT.ENQUOTE_NAME(r.db_link, FALSE); END LOOP; "
        "FOR r IN (SELECT db_link FROM all_db_links WHERE owner = 'PUBLIC' "
        "AND db_link LIKE 'TCM\\_%' ESCAPE '\\' "
        f"AND created < SYSDATE - {int(PUBLIC_LINK_MAX_AGE_DAYS)}) LOOP "
        "BEGIN EXECUTE IMMEDIATE 'DROP PUBLIC DATABASE LINK ' "
        "|| DBMS_ASSERT.ENQUOTE_NAME(r.db_link, FALSE); EXCEPTION WHEN no_priv THEN NULL; "
        "END; END LOOP; "
        "FOR r IN (SELECT t.table_name FROM user_tables t WHERE t.table_name LIKE "
        "'TCMSNAP\\_%' ESCAPE '\\' AND NOT EXISTS (SELECT 1 FROM tcmerge_jobs j "
        "WHERE j.status IN ('succeeded', 'restored') "
        "AND SUBSTR(j.job_id, -8) = LOWER(SUBSTR(t.table_name, 9, 8)))) LOOP "
        "EXECUTE IMMEDIATE 'DROP TABLE ' || DBMS_ASSERT.ENQUOTE_NAME(r.table_name, FALSE) "
        "|| ' PURGE'; END LOOP; "
        "END;")


def drop_table(name: str) -> sa.TextClause:
    """DROP TABLE name PURGE (a run's own helper; the name is quoted by the dialect)."""
    return sa.text(f"DROP TABLE {quote(name)} PURGE")


def create_empty_like(name: str, query: str) -> sa.TextClause:
    """CREATE TABLE name AS SELECT * FROM (query) WHERE 1 = 0: the columns of ``query``,
    no rows. DDL takes no bind variables (ORA-01027): ``query`` has none."""
    return sa.text(f"CREATE TABLE {quote(name)} AS SELECT * FROM ({query}) WHERE 1 = 0")


def insert_query(name: str, query: str) -> sa.TextClause:
    """INSERT INTO name <query>: fills a work or snapshot table inside the transaction
    (conventional: a direct-path insert would forbid reading it again, ORA-12838)."""
    return sa.text(f"INSERT INTO {quote(name)} {query}")
