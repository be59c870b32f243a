"""The stress tier (see tests/conftest.py)."""
