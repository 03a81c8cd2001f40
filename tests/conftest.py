"""Fixtures come from the tcmerge.testing.plugin pytest plugin (see pyproject addopts)."""
