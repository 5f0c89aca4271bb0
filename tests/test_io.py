"""Atomic writes: the result appears whole or not at all, with the permissions of an ordinary file."""

from __future__ import annotations

import os

import pytest

from hierlatent.io import atomic_directory, atomic_write_json


def test_atomic_file_has_umask_permissions_and_no_temp_left(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a" / "x.json", {"k": 1})
    finally:
        os.umask(old)
    path = tmp_path / "a" / "x.json"
    assert path.read_text().strip().startswith("{") and oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_atomic_directory_permissions_and_failure_leaves_nothing(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_directory(tmp_path / "d") as tmp:
            (tmp / "f").write_text("x")
        with pytest.raises(RuntimeError), atomic_directory(tmp_path / "e") as tmp:
            (tmp / "f").write_text("x")
            raise RuntimeError("boom")
    finally:
        os.umask(old)
    assert oct((tmp_path / "d").stat().st_mode & 0o777) == oct(0o755)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
