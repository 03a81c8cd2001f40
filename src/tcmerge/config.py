"""Everything tcmerge reads from the environment, in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

#: Choose the database provider for ``demo`` and the tests (embedded, system, testcontainers, url).
ENV_PROVIDER = "TCMERGE_DB_PROVIDER"
#: Server URL for the ``url`` provider (a superuser on a server the user owns).
ENV_PROVIDER_URL = "TCMERGE_DB_URL"
#: Set to 1 (CI does) to turn "no PostgreSQL available" into a test failure instead of a skip.
ENV_REQUIRE_DB = "TCMERGE_REQUIRE_DB"


@dataclass(frozen=True)
class Settings:
    provider: str | None
    provider_url: str | None
    require_db: bool

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            provider=env.get(ENV_PROVIDER) or None,
            provider_url=env.get(ENV_PROVIDER_URL) or None,
            require_db=env.get(ENV_REQUIRE_DB, "").strip().lower() in {"1", "true", "yes"},
        )


def read_secret(variable: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of a password variable named in a topology (``password_env``)."""
    env = os.environ if environ is None else environ
    return env.get(variable)
