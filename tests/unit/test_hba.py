"""pg_hba.conf evaluation as PostgreSQL does it (first match wins)."""

from __future__ import annotations

from tcmerge.preflight.hba import HbaConnection, HbaRule, evaluate, role_tokens


def rules(*lines: str) -> list[HbaRule]:
    return [HbaRule.parse(line, i) for i, line in enumerate(lines, start=1)]


def conn(address: str | None = "10.0.0.5", database: str = "tcdb", user: str = "tcuser",
         **kw: object) -> HbaConnection:
    return HbaConnection(database=database, user=user, address=address, **kw)  # type: ignore[arg-type]


def test_first_match_wins_and_reject() -> None:
    r = rules("host all all 10.0.0.0/24 reject", "host all all 0.0.0.0/0 scram-sha-256")
    verdict = evaluate(r, conn())
    assert not verdict.accepted and verdict.rule is r[0]
    assert evaluate(r, conn("10.0.1.5")).method == "scram-sha-256"


def test_no_rule_matches_is_a_rejection() -> None:
    verdict = evaluate(rules("host tcdb tcuser 192.168.10.0/24 password"), conn())
    assert verdict.rule is None and not verdict.accepted


def test_local_versus_host_and_ssl_variants() -> None:
    r = rules("local all all trust", "hostssl all all 0.0.0.0/0 md5",
              "hostnossl all all 0.0.0.0/0 password")
    assert evaluate(r, conn(None)).method == "trust"
    assert evaluate(r, conn(ssl=True)).method == "md5"
    assert evaluate(r, conn(ssl=False)).method == "password"


def test_database_keywords() -> None:
    r = rules("host sameuser all 0.0.0.0/0 md5", "host samerole all 0.0.0.0/0 password",
              "host replication all 0.0.0.0/0 trust", "host a,b,tcdb x 0.0.0.0/0 ident")
    assert evaluate(r, conn(database="tcuser")).method == "md5"
    assert evaluate(r, conn(database="chat", roles=frozenset({"chat"}))).method == "password"
    assert evaluate(r, conn(database="tcdb", user="x")).method == "ident"
    assert evaluate(r, conn(database="other")).rule is None  # replication never matches


def test_user_keywords_and_role_membership() -> None:
    r = rules("host all +chatadmins 0.0.0.0/0 scram-sha-256", "host all /^tc 0.0.0.0/0 md5")
    assert evaluate(r, conn(roles=frozenset({"chatadmins"}))).method == "scram-sha-256"
    assert evaluate(r, conn()).method == "md5"
    assert evaluate(r, conn(user="someone")).rule is None
    assert role_tokens(r, "tcdb") == {"chatadmins"}


def test_cidr_netmask_ipv6_and_uncertain_hostnames() -> None:
    r = rules("host all all db.example.com scram-sha-256",
              "host all all 10.0.0.0 255.255.0.0 md5", "host all all ::1/128 trust")
    verdict = evaluate(r, conn("10.0.200.1"))
    assert verdict.method == "md5" and verdict.uncertain == (r[0],)
    assert evaluate(r, conn("::1")).method == "trust"
    assert evaluate(r, conn("::ffff:10.0.0.1")).method == "md5"


def test_rows_of_pg_hba_file_rules() -> None:
    rule = HbaRule.from_row({"line_number": 7, "type": "host", "database": ["tcdb"],
                             "user_name": ["all"], "address": "127.0.0.1",
                             "netmask": "255.255.255.255", "auth_method": "reject",
                             "error": None})
    assert not evaluate([rule], conn("127.0.0.1")).accepted
    assert evaluate([rule], conn("127.0.0.2")).rule is None
