from __future__ import annotations

import pytest

from tcmerge.dburl import mask_url, parse_database, require_mergeable, scrub
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
