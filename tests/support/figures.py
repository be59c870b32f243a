"""Figures measured by the load and fault tests: on the terminal with or without -s, and as junit properties."""

from __future__ import annotations

import pytest


def report(request: pytest.FixtureRequest, title: str, **figures: object) -> None:
    """One line "[title] name value, ..." on the terminal, and one user property per figure."""
    request.node.user_properties.extend((f"{title}.{key}", value) for key, value in figures.items())
    capture = request.config.pluginmanager.getplugin("capturemanager")
    # What capsys.disabled() does: the figures are the point of these tests,
    # so they are shown even when pytest captures output.
    with capture.global_and_fixture_disabled():
        print(f"\n[{title}] " + ", ".join(f"{key} {value}" for key, value in figures.items()), flush=True)
