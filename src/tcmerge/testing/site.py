"""A TC database "the way a site might have it": what IM and Presence and an administrator
add around the TC tables, which a merge must leave exactly as it was.

``add_site_objects(ref, node)`` adds, to a database whose TC tables exist already:

- extra tables with rows (``site_presence``, ``site_audit``, ``ud_users``), one with a
  sequence-fed id (``site_audit_seq``, used: it has a last value);
- a stored function (``jabber_store_presence``) and a procedure
  (``tc_timelog_auto_cleanup``, the name of IM&P's cleanup procedure; never called);
- a trigger on a non-TC table (``site_presence_audit`` writes to ``site_audit``);
- a view over a TC table (``site_room_members``);
- an extra index on a TC table (``tc_msgarchive_sent_date_idx``, as the cleanup job's
  "Update Schema" button adds indexes), which a merge into a small target sets aside
  and builds again;
- grants (to the role ``site_reader``, made once per server) on an extra table, a TC
  table, the view, the function and the sequence; EXECUTE revoked from PUBLIC;
- comments on an extra table, a column, the function and a TC table.

``reshape_tc_tables(ref)`` changes the TC tables themselves as a site's may differ from
tcmerge's model (before ``add_site_objects``: its view reads tc_users):

- tc_users with its columns in another order (rebuilt: key and NOT NULLs kept);
- an extra nullable column in tc_msgarchive (``site_tag``), which a merge carries through;
- times with a time zone: tc_msgarchive.sent_date and tc_messages.stamp as timestamptz
  (the same instants, read in UTC).
"""

from __future__ import annotations

from tcmerge.db import connect
from tcmerge.dburl import DatabaseRef

#: the role the site's grants name (a cluster-wide object: created when absent)
READER = "site_reader"
#: the extra index on a TC table
TC_INDEX = "tc_msgarchive_sent_date_idx"
#: the site's tables (rows digested by the tests)
TABLES = ("site_presence", "site_audit", "ud_users")

_ROLE = f"""
DO $$ BEGIN
  CREATE ROLE {READER} NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$
"""

_OBJECTS = (
    "CREATE TABLE site_presence (user_jid varchar(3071) PRIMARY KEY, "
    "status varchar(32) NOT NULL, updated timestamp NOT NULL DEFAULT now())",
    "CREATE SEQUENCE site_audit_seq",
    "CREATE TABLE site_audit (id bigint PRIMARY KEY DEFAULT nextval('site_audit_seq'), "
    "user_jid varchar(3071) NOT NULL, what text NOT NULL)",
    "ALTER SEQUENCE site_audit_seq OWNED BY site_audit.id",
    "CREATE TABLE ud_users (user_jid varchar(3071) PRIMARY KEY, display_name text, "
    "registered date NOT NULL)",
    """CREATE FUNCTION site_presence_audit_fn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO site_audit (user_jid, what) VALUES (NEW.user_jid, TG_OP || ' ' || NEW.status);
  RETURN NEW;
END $$""",
    "CREATE TRIGGER site_presence_audit AFTER INSERT OR UPDATE ON site_presence "
    "FOR EACH ROW EXECUTE FUNCTION site_presence_audit_fn()",
    """CREATE FUNCTION jabber_store_presence(p_jid text, p_status text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO site_presence (user_jid, status) VALUES (p_jid, p_status)
  ON CONFLICT (user_jid) DO UPDATE SET status = EXCLUDED.status, updated = now();
END $$""",
    """CREATE PROCEDURE tc_timelog_auto_cleanup(p_days integer) LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM tc_timelog WHERE "end" < now() - make_interval(days => p_days);
END $$""",
    "CREATE VIEW site_room_members AS SELECT room_jid, count(*) AS members "
    "FROM tc_users GROUP BY room_jid",
    f"CREATE INDEX {TC_INDEX} ON tc_msgarchive (sent_date)",
    f"GRANT SELECT ON site_presence, site_room_members, tc_rooms TO {READER}",
    f"GRANT SELECT, UPDATE (display_name) ON ud_users TO {READER}",
    f"GRANT USAGE ON SEQUENCE site_audit_seq TO {READER}",
    "REVOKE EXECUTE ON FUNCTION jabber_store_presence(text, text) FROM PUBLIC",
    f"GRANT EXECUTE ON FUNCTION jabber_store_presence(text, text) TO {READER}",
    "COMMENT ON TABLE site_presence IS 'last presence per user (IM and Presence)'",
    "COMMENT ON COLUMN site_presence.status IS 'available, away, dnd, offline'",
    "COMMENT ON FUNCTION jabber_store_presence(text, text) IS 'stores a presence'",
    "COMMENT ON TABLE tc_rooms IS 'persistent chat rooms (Text Conference)'",
)


#: the extra nullable column ``reshape_tc_tables`` adds to tc_msgarchive
EXTRA_COLUMN = "site_tag"

_RESHAPE = (
    "CREATE TABLE tc_users_site AS SELECT initiator_jid, reason, nick_jid, affiliation, role, "
    "real_jid, room_jid FROM tc_users",
    "DROP TABLE tc_users",
    "ALTER TABLE tc_users_site RENAME TO tc_users",
    "ALTER TABLE tc_users ALTER COLUMN nick_jid SET NOT NULL, ALTER COLUMN affiliation SET "
    "NOT NULL, ALTER COLUMN role SET NOT NULL, ALTER COLUMN real_jid SET NOT NULL, "
    "ALTER COLUMN room_jid SET NOT NULL",
    "ALTER TABLE tc_users ADD PRIMARY KEY (room_jid, real_jid)",
    f"ALTER TABLE tc_msgarchive ADD COLUMN {EXTRA_COLUMN} varchar(64)",
    "ALTER TABLE tc_msgarchive ALTER COLUMN sent_date TYPE timestamptz "
    "USING sent_date AT TIME ZONE 'UTC'",
    "ALTER TABLE tc_messages ALTER COLUMN stamp TYPE timestamptz USING stamp AT TIME ZONE 'UTC'",
)


def reshape_tc_tables(ref: DatabaseRef) -> None:
    """Give the TC tables a site's differences (see the module's docstring), rows kept."""
    with connect(ref) as conn:
        for statement in _RESHAPE:
            conn.exec_driver_sql(statement)
        conn.commit()


def add_site_objects(ref: DatabaseRef, node: int = 1) -> None:
    """Add the site's objects and rows (``node`` varies the rows) in one transaction."""
    rows = (
        f"SELECT jabber_store_presence('user{i}@node{node}.example.com', "
        f"(ARRAY['available', 'away', 'dnd'])[{i % 3 + 1}])" for i in range(1, 6))
    with connect(ref) as conn:
        conn.exec_driver_sql(_ROLE)
        for statement in _OBJECTS:
            conn.exec_driver_sql(statement)
        for statement in rows:
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql(
            "INSERT INTO ud_users SELECT 'user' || i || '@node" + str(node)
            + ".example.com', 'User ' || i, DATE '2020-01-01' + i FROM generate_series(1, 5) "
            "AS i")
        conn.commit()
