"""Schema operations as library functions: upgrade, downgrade, offline SQL, check.

They drive the Alembic environment in ``migrations/`` (shipped inside the
package as ``tcmerge/migrations``) and return results; they never print.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from tcmerge.db import connect
from tcmerge.dburl import DatabaseRef
from tcmerge.dialects import adapter_for
from tcmerge.errors import ConfigError
from tcmerge.results import Finding, Report
from tcmerge.schema import tc
from tcmerge.schema.compare import compare_to_model, reflect

VERSION_TABLE = "tcmerge_alembic_version"
OFFLINE_DIALECTS = ("postgresql", "oracle")


def migrations_dir() -> Path:
    """The Alembic script directory: inside the installed package, else the checkout's."""
    packaged = Path(str(resources.files("tcmerge"))) / "migrations"
    if (packaged / "env.py").is_file():
        return packaged
    checkout = Path(__file__).resolve().parents[3] / "migrations"
    if (checkout / "env.py").is_file():
        return checkout
    raise ConfigError("the tcmerge migrations are missing from this installation")


def _config(**attributes: Any) -> Config:
    cfg = Config(stdout=io.StringIO())
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes.update(attributes)
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


@dataclass
class MigrationResult:
    database: str
    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def as_dict(self) -> dict[str, Any]:
        return {"ok": True, "database": self.database, "before": self.before,
                "after": self.after, "changed": self.changed}


def current_revision(conn: sa.Connection) -> str | None:
    ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return ctx.get_current_revision()


@contextmanager
def _known_revision(revision: str) -> Iterator[None]:
    """Alembic's error for a revision it does not have, as a usage error (exit 2)."""
    try:
        yield
    except CommandError as exc:
        raise ConfigError(f"revision {revision!r}: {exc}") from None


def _migrate(ref: DatabaseRef, action: str, revision: str) -> MigrationResult:
    with connect(ref) as conn:
        before = current_revision(conn)
        cfg = _config(connection=conn)
        with _known_revision(revision):
            getattr(command, action)(cfg, revision)
        conn.commit()
        after = current_revision(conn)
    return MigrationResult(ref.label, before, after)


def upgrade(ref: DatabaseRef, revision: str = "head") -> MigrationResult:
    """Create or upgrade the TC schema and tcmerge's tables (existing tables are kept)."""
    return _migrate(ref, "upgrade", revision)


def downgrade(ref: DatabaseRef, revision: str) -> MigrationResult:
    """Step the schema back; ``base`` drops every table the migrations manage."""
    return _migrate(ref, "downgrade", revision)


def offline_sql(dialect: str, revision: str = "head") -> str:
    """The DDL for a dialect, produced without a server (Alembic offline mode)."""
    if dialect not in OFFLINE_DIALECTS:
        raise ConfigError(
            f"--dialect must be one of {', '.join(OFFLINE_DIALECTS)}, not {dialect!r}"
        )
    buffer = io.StringIO()
    cfg = _config(dialect=dialect)
    cfg.output_buffer = buffer
    with _known_revision(revision):
        command.upgrade(cfg, revision, sql=True)
    return buffer.getvalue()


@dataclass
class SchemaReport(Report):
    database: str = ""
    revision: str | None = None
    head: str | None = None
    tables: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        record = super().as_dict()
        record.update(database=self.database, revision=self.revision, head=self.head,
                      tables=self.tables)
        return record


def check(ref: DatabaseRef, tables: tuple[sa.Table, ...] = tc.ALL_TABLES,
          *, strict: bool = False) -> SchemaReport:
    """Compare the live schema of ``ref`` with the model; findings, nothing changed."""
    adapter = adapter_for(ref)
    with connect(ref) as conn:
        live = reflect(conn, tables)
        revision = current_revision(conn)
        findings: list[Finding] = compare_to_model(live, tables, ref.label)
        if any(f.code == "SCHEMA_MISSING_TABLE" for f in findings):
            # a table off the session's search_path is named where it is (as validate does)
            facts = adapter.server_facts(conn)
            findings = [adapter.missing_table(conn, facts, f)
                        if f.code == "SCHEMA_MISSING_TABLE" else f for f in findings]
        conn.rollback()
    return SchemaReport(findings=findings, strict=strict, database=ref.label,
                        revision=revision, head=head_revision(),
                        tables=[t.name for t in tables])
