"""Plain result data shared by every command: findings and reports.

The library returns these; only the CLI renders them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.StrEnum):
    """How much a finding matters. Errors block; warnings block only with ``--strict``."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


_SEVERITY_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


@dataclass(frozen=True)
class Finding:
    """One observation with a stable code, e.g. SCHEMA_MISSING_COLUMN."""

    severity: Severity
    code: str
    message: str
    database: str | None = None
    table: str | None = None
    hint: str | None = None
    count: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "severity": str(self.severity),
            "code": self.code,
            "message": self.message,
        }
        for key in ("database", "table", "hint", "count"):
            value = getattr(self, key)
            if value is not None:
                record[key] = value
        if self.details:
            record["details"] = self.details
        return record

    def blocks(self, *, strict: bool = False) -> bool:
        return self.severity is Severity.ERROR or (strict and self.severity is Severity.WARNING)


def error(code: str, message: str, **kw: Any) -> Finding:
    return Finding(Severity.ERROR, code, message, **kw)


def warning(code: str, message: str, **kw: Any) -> Finding:
    return Finding(Severity.WARNING, code, message, **kw)


def info(code: str, message: str, **kw: Any) -> Finding:
    return Finding(Severity.INFO, code, message, **kw)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Most severe first, then grouped by database and table (stable otherwise)."""
    return sorted(
        findings,
        key=lambda f: (_SEVERITY_ORDER[f.severity], f.database or "", f.table or ""),
    )


def blocking(findings: Iterable[Finding], *, strict: bool = False) -> list[Finding]:
    return [f for f in findings if f.blocks(strict=strict)]


@dataclass
class Report:
    """Findings about a set of databases. ``ok`` is False when any finding blocks."""

    findings: list[Finding] = field(default_factory=list)
    strict: bool = False

    @property
    def ok(self) -> bool:
        return not blocking(self.findings, strict=self.strict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "findings": [f.as_dict() for f in sort_findings(self.findings)],
        }
