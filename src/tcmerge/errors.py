"""The error tree. Every error carries a stable ``code`` and the exit code the CLI uses.

Exit codes follow the contract: 1 = blocking findings, 2 = usage/configuration or
unsupported database (nothing attempted), 3 = failure while working.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_FAILURE = 3


class TcmergeError(Exception):
    """Base of every error tcmerge raises on purpose."""

    code: str = "ERROR"
    exit_code: int = EXIT_FAILURE

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class ConfigError(TcmergeError):
    """Bad input from the user: options, URLs, files. Nothing was attempted."""

    code = "CONFIG_ERROR"
    exit_code = EXIT_USAGE


class UnsupportedDatabaseError(ConfigError):
    """A database type tcmerge refuses for this operation (MS SQL for merging)."""

    code = "UNSUPPORTED_DATABASE"


class MixedDatabaseTypesError(ConfigError):
    """Inputs of different dialects cannot be merged."""

    code = "MIXED_DATABASE_TYPES"


class ProviderUnavailable(TcmergeError):
    """A database provider cannot run here; the message says why."""

    code = "PROVIDER_UNAVAILABLE"
    exit_code = EXIT_USAGE


class ProviderError(TcmergeError):
    """A database provider failed while starting or serving."""

    code = "PROVIDER_ERROR"


class DatabaseError(TcmergeError):
    """A database operation failed while working (connection lost, statement failed)."""

    code = "DATABASE_ERROR"


class FindingsBlock(TcmergeError):
    """Blocking findings stopped the command; nothing was written."""

    code = "BLOCKING_FINDINGS"
    exit_code = EXIT_FINDINGS
