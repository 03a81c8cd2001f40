"""Test data as tables (no test functions here): see ``rules/__init__.py``."""
