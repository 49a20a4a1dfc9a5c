"""Shared fixtures. Every test gets its own SQLite store so nothing touches ~/.pglab."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path, monkeypatch):
    monkeypatch.setenv("PGLAB_STORE", str(tmp_path / "runs.sqlite"))
    yield
