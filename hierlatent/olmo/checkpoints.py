"""Checkpoint discovery for ``probe-olmo``: local revision directories, a ``fit`` run's ``hf/`` exports, or hub
repositories (OLMo ``step20000-tokens84B`` branches, Pythia ``step143000`` branches), plus revision
selection, step/token parsing and the weights hash used to skip byte-identical revisions.

The weights hash is ``sha256`` over the lines ``"<file name>\\t<sha256 of the file's bytes>\\n"`` of the
weight files (``*.safetensors``, ``pytorch_model*.bin``) in name order. Defined per file so that a hub
revision can be hashed from the hub's LFS metadata (which records each file's sha256) without
downloading it, and a local directory by streaming its files: both give the same value.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hierlatent.errors import CheckpointError, ConfigError
from hierlatent.revisions import STEP_RE, parse_revision

HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_CHUNK = 16 * 2**20  # streamed hashing: constant memory for multi-GB weight files


@dataclass
class CheckpointRef:
    """One revision to probe.

    Args:
        revision: Directory or branch name (the output sub-directory name).
        step: Training step parsed from the name (or hierlatent.json), None if unknown.
        tokens: Training tokens seen, None if unknown.
        source: Local directory path, or ``hub:<repo_id>``.
        path: Local directory with config.json + weights (None for a hub revision not yet downloaded).
        repo_id: Hub repository id for hub revisions.
        commit: Hub commit hash of the revision (recorded in the manifest).
    """

    revision: str
    step: int | None
    tokens: int | None
    source: str
    path: str | None = None
    repo_id: str | None = None
    commit: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON / pickling across ranks)."""
        return asdict(self)


def revision_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be one directory under ``--output_dir`` (``output_dir / revision``), or None.

    A hub listing is not trusted: ``../../x`` or ``/etc/x`` would otherwise write outside ``--output_dir``.

    Args:
        name: the revision (branch or directory) name.
    """
    reasons = [why for bad, why in (
        (name.startswith("/"), "starts with '/'"),
        ("/" in name.lstrip("/"), "contains '/'"),
        ("\\" in name, "contains '\\'"),
        (".." in name, "contains '..'"),
        (name in ("", "."), "is empty or '.'"),
        ("\0" in name, "contains a NUL byte"),
    ) if bad]
    return " and ".join(reasons) if reasons else None


def is_weight_file(name: str) -> bool:
    """Model weight files (sharded or not); excludes optimizer/training-args pickles."""
    return name.endswith(".safetensors") or (name.startswith("pytorch_model") and name.endswith(".bin"))


def weight_files(path: Path) -> list[Path]:
    """The weight files of a checkpoint directory, in name order."""
    return sorted(p for p in Path(path).iterdir() if p.is_file() and is_weight_file(p.name))


def combine_file_hashes(file_hashes: dict[str, str]) -> str:
    """The weights hash from ``{file name: sha256 hex}``."""
    h = hashlib.sha256()
    for name in sorted(file_hashes):
        h.update(f"{name}\t{file_hashes[name]}\n".encode())
    return h.hexdigest()


def weights_hash(path: Path) -> str:
    """Weights hash of a local checkpoint directory (files streamed in 16 MiB chunks).

    Raises:
        CheckpointError: the directory has no weight files.
    """
    files = weight_files(path)
    if not files:
        raise CheckpointError(f"{path}: no weight files (*.safetensors or pytorch_model*.bin)")
    hashes = {}
    for f in files:
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
        hashes[f.name] = h.hexdigest()
    return combine_file_hashes(hashes)


def _looks_like_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file() or any(is_weight_file(p.name) for p in path.iterdir() if p.is_file())


def _local_ref(path: Path) -> CheckpointRef:
    step, tokens = parse_revision(path.name) or (None, None)
    meta = path / "hierlatent.json"  # written by HFCheckpoint next to a fit run's export
    if meta.is_file():
        try:
            info = json.loads(meta.read_text())
            step = int(info.get("step", step)) if info.get("step") is not None else step
            seen = info.get("tokens", info.get("tokens_seen"))
            tokens = int(seen) if seen is not None else tokens
        except (ValueError, TypeError, AttributeError):
            pass  # a broken side-car must not hide the checkpoint; step from the name is kept
    return CheckpointRef(revision=path.name, step=step, tokens=tokens, source=str(path.resolve()), path=str(path.resolve()))


def discover_local(root: Path) -> list[CheckpointRef]:
    """A checkpoint directory itself, or its revision sub-directories (a run dir's ``hf/`` is followed)."""
    if _looks_like_checkpoint(root):
        return [_local_ref(root)]
    if (root / "hf").is_dir() and not STEP_RE.search(root.name):
        root = root / "hf"
    subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    # step-named directories are kept even when broken (missing config.json) so the failure is recorded
    return [_local_ref(p) for p in subdirs if STEP_RE.search(p.name) or _looks_like_checkpoint(p)]


def discover_hub(repo_id: str) -> list[CheckpointRef]:
    """All branches of a hub model repository (``huggingface_hub.list_repo_refs``) with their commits."""
    from huggingface_hub import list_repo_refs

    try:
        refs = list_repo_refs(repo_id)
    except Exception as err:  # network, auth, missing repo: all one clear message
        raise CheckpointError(f"--checkpoints: cannot list revisions of hub repo {repo_id!r}: {err}") from err
    out = []
    for branch in refs.branches:
        problem = revision_name_problem(branch.name)
        if problem is not None:  # skipped, not fatal: the rest of a repository's checkpoints stay usable
            print(f"probe-olmo: skipping revision {branch.name!r} of hub repo {repo_id!r}: its name {problem}"
                  " (not a single directory under --output_dir)", file=sys.stderr, flush=True)
            continue
        step, tokens = parse_revision(branch.name) or (None, None)
        out.append(CheckpointRef(branch.name, step, tokens, f"hub:{repo_id}", None, repo_id, branch.target_commit))
    return out


def hub_weights_hash(ref: CheckpointRef) -> str | None:
    """Weights hash of a hub revision from its LFS metadata (no download); None if not available."""
    from huggingface_hub import HfApi

    files = HfApi().list_repo_tree(ref.repo_id, revision=ref.commit or ref.revision, recursive=False)
    hashes = {}
    for item in files:
        if is_weight_file(Path(getattr(item, "path", "")).name):
            lfs = getattr(item, "lfs", None)
            sha = getattr(lfs, "sha256", None) or (lfs.get("sha256") if isinstance(lfs, dict) else None)
            if sha is None:
                return None
            hashes[Path(item.path).name] = sha
    return combine_file_hashes(hashes) if hashes else None


def download(ref: CheckpointRef, cache_dir: Path | None) -> Path:
    """Materialise a hub revision locally (``snapshot_download``; cached) and return its directory."""
    from huggingface_hub import snapshot_download

    local = snapshot_download(ref.repo_id, revision=ref.commit or ref.revision,
                              cache_dir=str(cache_dir) if cache_dir else None)
    return Path(local)


def select_revisions(refs: list[CheckpointRef], revisions: str | list[str]) -> list[CheckpointRef]:
    """Apply ``--revisions``: ``all``, ``every:k`` (every k-th in step order), ``steps:a-b`` (inclusive) or names.

    Raises:
        ConfigError: malformed selection or an unknown revision name (before anything is loaded).
    """
    refs = sorted(refs, key=lambda r: (r.step is None, r.step if r.step is not None else 0, r.revision))
    sel = revisions if isinstance(revisions, str) else ",".join(revisions)
    sel = sel.strip()
    if sel == "all":
        return refs
    if sel.startswith("every:"):
        try:
            k = int(sel[len("every:"):])
        except ValueError:
            k = 0
        if k < 1:
            raise ConfigError(f"--revisions: 'every:k' needs an integer k >= 1, got {sel!r}")
        return refs[::k]
    if sel.startswith("steps:"):
        m = re.fullmatch(r"steps:(\d+)-(\d+)", sel)
        if m is None:
            raise ConfigError(f"--revisions: expected 'steps:a-b' with integers, got {sel!r}")
        lo, hi = int(m.group(1)), int(m.group(2))
        return [r for r in refs if r.step is not None and lo <= r.step <= hi]
    names = [n.strip() for n in sel.split(",") if n.strip()]
    by_name = {r.revision: r for r in refs}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        shown = ", ".join(sorted(by_name)[:5])
        raise ConfigError(f"--revisions: unknown revision(s) {unknown} (available: {shown}, ...)")
    return [by_name[n] for n in names]


def discover(checkpoints: str | list[str], revisions: str | list[str] = "all") -> list[CheckpointRef]:
    """Resolve ``--checkpoints`` (directories, list of directories, or a hub repo id) and ``--revisions``.

    Raises:
        CheckpointError: a path does not exist and is not a hub id, or nothing was found.
        ConfigError: a bad ``--revisions`` selection.
    """
    sources = [checkpoints] if isinstance(checkpoints, (str, Path)) else list(checkpoints)
    if not sources:
        raise CheckpointError("--checkpoints: no source given")
    refs: list[CheckpointRef] = []
    for src in sources:
        path = Path(str(src)).expanduser()
        if path.is_dir():
            refs.extend(discover_local(path))
        elif not path.exists() and HUB_ID_RE.match(str(src)) and not str(src).startswith((".", "/", "~")):
            refs.extend(discover_hub(str(src)))
        else:
            raise CheckpointError(f"--checkpoints: {src} is neither a directory nor a hub repo id")
    for ref in refs:
        problem = revision_name_problem(ref.revision)
        if problem is not None:
            raise CheckpointError(f"--checkpoints: revision name {ref.revision!r} ({ref.source}) {problem}:"
                                  " it must be a single directory name under --output_dir")
    names = [r.revision for r in refs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CheckpointError(f"--checkpoints: revision names occur twice across sources: {dupes}")
    selected = select_revisions(refs, revisions)
    if not selected:
        raise CheckpointError(f"--checkpoints: no checkpoints found in {sources} (selection {revisions!r})")
    return selected
