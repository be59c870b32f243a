"""The mount tier (see tests/conftest.py)."""
