"""Fixtures for the merge engine tests: TC databases made from a template, small data."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from psycopg import sql

from tcmerge.dburl import DatabaseRef
from tcmerge.providers import DatabaseServer
from tcmerge.testing.plugin import unique_name

from .data import TcData

_templates: dict[int, str] = {}


def _template(server: DatabaseServer) -> str:
    """A database with the TC schema (and tcmerge_jobs) to clone cheaply."""
    key = id(server)
    if key not in _templates:
        from tcmerge.schema import manage

        name = unique_name("tctemplate")
        ref = server.create_database(name)
        manage.upgrade(ref)
        _templates[key] = name
    return _templates[key]


def make_tc_database(server: DatabaseServer, created: list[str], *, prefix: str = "tc",
                     name: str | None = None) -> DatabaseRef:
    name = name or unique_name(prefix)
    server.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
        sql.Identifier(name), sql.Identifier(_template(server))).as_string(None))
    created.append(name)
    return server.admin_ref(name)


@pytest.fixture
def tc_factory(embedded_server: DatabaseServer) -> Iterator[Callable[..., TcData]]:
    """``tc_factory()`` → a fresh TC database (TcData: its ref plus insert helpers)."""
    created: list[str] = []

    def make(**kw: str) -> TcData:
        return TcData(make_tc_database(embedded_server, created, **kw))

    yield make
    for name in created:
        embedded_server.drop_database(name)


@pytest.fixture
def site_factory(tc_factory: Callable[..., TcData]) -> Callable[..., TcData]:
    """``site_factory(node)`` → a fresh TC database as a site might have it: extra tables
    with rows, a function, a procedure, a trigger, a view, a sequence, an extra index on
    a TC table, grants and comments (``tcmerge.testing.site``); with ``reshaped=True`` its TC
    tables differ from the model as a site's may."""
    from tcmerge.testing.site import add_site_objects, reshape_tc_tables

    def make(node: int = 1, *, reshaped: bool = False) -> TcData:
        db = tc_factory()
        if reshaped:  # another column order, an extra column, timestamptz
            reshape_tc_tables(db.ref)
        add_site_objects(db.ref, node)
        return db

    return make
