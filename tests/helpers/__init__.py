"""Helpers shared by test modules (`from tests.helpers.X import ...`); fixtures live in tests/conftest.py."""
