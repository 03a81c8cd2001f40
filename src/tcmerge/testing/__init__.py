"""Test support (pytest plugin and fixtures). No runtime module imports this package."""
