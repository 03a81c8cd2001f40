"""tcmerge: merge Text Conference (persistent chat) databases and model their HA service."""

from __future__ import annotations

__version__ = "0.1.0"
