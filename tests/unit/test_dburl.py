from __future__ import annotations

import pytest

from tcmerge.dburl import mask_url, parse_database, require_mergeable, same_place, scrub
from tcmerge.errors import ConfigError, MixedDatabaseTypesError, UnsupportedDatabaseError


def test_driver_normalised_and_password_masked() -> None:
    ref = parse_database("postgresql://tc:s3cr%40t@db1:5432/tcdb1")
    assert ref.url.drivername == "postgresql+psycopg"
    assert ref.url.password == "s3cr@t"
    assert "s3cr" not in ref.label and "***" in ref.label
    assert "s3cr" not in str(ref) and "s3cr" not in repr(ref.label)
    assert parse_database("oracle://u@h:1521/?service_name=FREEPDB1").url.drivername == \
        "oracle+oracledb"


def test_mssql_refused_before_connecting() -> None:
    refs = [parse_database("mssql+pyodbc://sa:pw@nowhere.invalid/tc"),
            parse_database("postgresql://u@h/db")]
    with pytest.raises(UnsupportedDatabaseError) as info:
        require_mergeable(refs)
    assert info.value.code == "UNSUPPORTED_DATABASE" and info.value.exit_code == 2
    assert "pw" not in info.value.message


def test_mixed_dialects_refused() -> None:
    refs = [parse_database("postgresql://u@h/db"),
            parse_database("oracle://u@h:1521/?service_name=X")]
    with pytest.raises(MixedDatabaseTypesError) as info:
        require_mergeable(refs)
    assert info.value.code == "MIXED_DATABASE_TYPES"
    assert require_mergeable(refs[:1]) == "postgresql"


def test_text_that_is_not_a_url_is_shown_without_what_could_be_a_password() -> None:
    from tcmerge.dburl import mask_text

    assert mask_text("u:s3cr@t@db1:5432/x") == "u:***@db1:5432/x"
    assert mask_text("oracle://u:pw@h:port/?service_name=S") == "oracle://u:***@h:port/?service_name=S"
    assert mask_text("h/db?sslmode=require&Password=pw") == "h/db?sslmode=require&Password=***"
    assert mask_text("tcdb1") == "tcdb1" and mask_text("u@h/db") == "u@h/db"


def test_not_a_url() -> None:
    with pytest.raises(ConfigError, match="--topology"):
        parse_database("tcdb1")


def test_scrub_and_mask() -> None:
    assert scrub("password authentication failed for hunter2", ["hunter2"]) == \
        "password authentication failed for ***"
    assert mask_url("postgresql+psycopg://u:pw@h/db") == "postgresql+psycopg://u:***@h/db"


def test_without_password_really_removes_it() -> None:
    from tcmerge.dburl import without_password

    url = parse_database("postgresql://u:Pw-123@h/db?password=Pw-123").url
    assert "Pw-123" not in without_password(url).render_as_string(hide_password=False)
    # the trap this helper exists for: URL.set(password=None) keeps the password
    assert url.set(password=None).password == "Pw-123"


def test_password_in_the_query_is_moved_masked_and_scrubbed() -> None:
    from tcmerge.dburl import without_password

    ref = parse_database("postgresql://u@h/db?password=Qu3ry-pw&sslpassword=Key-pw")
    assert ref.url.password == "Qu3ry-pw" and "password" not in ref.url.query
    assert set(ref.secrets) == {"Qu3ry-pw", "Key-pw"}
    assert "Qu3ry-pw" not in ref.label and "Key-pw" not in ref.label
    bare = without_password(ref.url).render_as_string(hide_password=False)
    assert "Qu3ry-pw" not in bare and "Key-pw" not in bare


def test_scrub_masks_whole_tokens_only() -> None:
    assert scrub("all inputs must be of one type: postgresql", ["p"]) == \
        "all inputs must be of one type: postgresql"
    assert scrub("password=p host=h", ["p"]) == "password=*** host=h"
    assert scrub("url u:p%40ss@h", ["p@ss"]) == "url u:***@h"


def test_with_password_none_really_removes_it() -> None:
    ref = parse_database("postgresql://u:S3cret@h/db")
    assert ref.with_password(None).url.password is None


@pytest.mark.parametrize(("url", "error"), [
    ("foo://u@h/db", UnsupportedDatabaseError),
    ("postgresql://u@h:70000/db", ConfigError),
    ("postgresql://u@h:0/db", ConfigError),
])
def test_unknown_types_and_ports_out_of_range_are_refused_before_connecting(
        url: str, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        parse_database(url)
    assert info.value.exit_code == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize(("text", "expected"), [
    ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),  # libpq's synonym
    ("postgresql+psycopg2://u@h:5433/db", "postgresql+psycopg://u@h:5433/db"),
    ("postgresql+pg8000://u@h/db", "postgresql+psycopg://u@h/db"),
    ("oracle+cx_oracle://u@h:1521/?service_name=FREEPDB1",
     "oracle+oracledb://u@h:1521/?service_name=FREEPDB1"),
])
def test_other_drivers_and_the_postgres_scheme_name_the_same_server(
        text: str, expected: str) -> None:
    # tcmerge connects with psycopg 3 and python-oracledb only; the URL's driver was an
    # internal error (ModuleNotFoundError, exit 3) and postgres:// was refused
    assert parse_database(text).url.render_as_string(hide_password=False) == expected


def test_same_place_sets_password_and_driver_aside() -> None:
    from sqlalchemy.engine import make_url

    one = make_url("postgresql+psycopg://tc:pw@db2:5432/tcdb2")
    assert same_place(one, make_url("postgresql://tc@db2:5432/tcdb2"))
    assert not same_place(one, make_url("postgresql://tc@db2:5433/tcdb2"))
    assert not same_place(one, make_url("postgresql://tc@db2:5432/tcdb1"))
