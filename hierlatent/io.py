"""Atomic file writes and the cache root: nothing half-written is ever mistaken for a finished file."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hierlatent.errors import ConfigError, CorpusError, HierlatentError


def cache_root() -> Path:
    """Cache root: ``$HIERLATENT_CACHE`` or ``~/.cache/hierlatent``."""
    return Path(os.environ.get("HIERLATENT_CACHE") or Path.home() / ".cache" / "hierlatent").expanduser()


def _raise_io(path: Path, exc: OSError) -> None:
    if exc.errno == errno.ENOSPC:
        raise CorpusError(f"disk full while writing {path}") from exc
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        raise CorpusError(f"cannot write {path}: {exc.strerror}") from exc
    raise exc


def _umask() -> int:
    """The process umask (read by setting and restoring it: POSIX offers no pure read)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` through a temp file in the same directory and a rename."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; results are meant to be shared
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        _raise_io(path, exc)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text (UTF-8) atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


class atomic_directory:
    """Context manager: build a directory under a temp name, rename it into place on success.

    ``with atomic_directory(final) as tmp: ...write into tmp...``. On an exception the temp
    directory is removed and ``final`` is untouched; an existing ``final`` is replaced.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent))
            self.tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700 directories
        except OSError as exc:
            _raise_io(self.path, exc)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.tmp is not None
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        try:
            if self.path.exists():
                old = self.path.with_name(f".{self.path.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(self.path, old)
                os.replace(self.tmp, self.path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(self.tmp, self.path)
        except OSError as err:
            shutil.rmtree(self.tmp, ignore_errors=True)
            _raise_io(self.path, err)


def check_writable(output_dir: Path, flag: str = "--output_dir", error: type[HierlatentError] = ConfigError,
                   hint: str = "") -> None:
    """An output directory must be a directory this process can create or write into (checked without creating it).

    Args:
        output_dir: the directory a command will write into.
        flag: the flag (or setting) named in the error.
        error: the error raised (``CorpusError`` for the corpus cache, whose place is an environment variable).
        hint: appended to the message (e.g. how to choose another directory).
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise error(f"{flag}: {output_dir} exists and is not a directory{hint}")
    existing = next(p for p in [output_dir, *output_dir.absolute().parents] if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise error(f"{flag}: {existing} is not writable (to create {output_dir}){hint}")
