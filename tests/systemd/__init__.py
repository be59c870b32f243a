"""The systemd tier (see tests/conftest.py)."""
