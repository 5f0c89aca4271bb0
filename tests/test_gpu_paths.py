"""The GPU-only code paths, run on a CPU: ``--model.compile true`` (inductor), ``bf16-mixed``, probes in bf16, FSDP.

No GPU has run this project yet; these tests make sure that a cluster user is not the first to execute
these paths. What a CPU cannot show (CUDA kernels, NCCL, MFU against a real peak) is measured by
``tests/benchmarks/gpu_check.py`` on a GPU; its ``--smoke`` mode (every code path of that script at tiny
size on CPU) is the last test here.

Tolerance of the bf16 probes: every number a probe returns in a bfloat16 copy of the model lies within
``BF16_ATOL + BF16_RTOL × max |value|`` (over that probe's float32 numbers) of the float32 result.
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from hltest import TESTS_DIR, run_hierlatent, scalars, tiny_fit_config

ROOT = TESTS_DIR.parent

BF16_ATOL = 2e-2
BF16_RTOL = 2e-2


def _fit(tmp_path: Path, **overrides) -> tuple[Path, dict]:
    """One tiny console-script fit with config overrides; returns the run directory and its scalars."""
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(tiny_fit_config(**overrides)))
    run_hierlatent(["fit", "--config", str(tmp_path / "cfg.yaml")], cwd=tmp_path, timeout=600,
                   env={"HIERLATENT_CACHE": str(tmp_path / "cache")})
    run = tmp_path / "runs" / "hierlatent" / "run"
    return run, scalars(run)


def _check_run(run: Path, s: dict) -> None:
    """Finite losses at every step, a loss that went down, an HF export that opens with the plain HF keys."""
    from transformers import AutoModelForCausalLM

    losses = [v for _, v in s["train/loss"]]
    assert len(losses) == 12 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) < sum(losses[:3])
    export = run / "hf" / "step-12"
    model = AutoModelForCausalLM.from_pretrained(export)
    assert not any("_orig_mod" in k for k in model.state_dict())


def _tiny_model_args(**extra) -> dict:
    return {"n_layers": 2, "d_model": 32, "n_heads": 4, "d_mlp": 64, "context_window": 16, "lr": 3e-3, **extra}


def test_cc_for_inductor():
    """Inductor's CPU backend compiles C++: the test machine needs a C compiler (the compile tests need it)."""
    import shutil

    assert shutil.which("cc") or shutil.which("gcc") or shutil.which("g++"), "no C compiler: inductor cannot run on CPU"


@pytest.mark.slow
def test_fit_compile_and_bf16_mixed_on_cpu(tmp_path):
    """``--model.compile true`` under ``bf16-mixed`` through the console script, with validation and HF exports.

    Slow (324 s on the loaded 2-core machine: inductor compiles training and validation graphs); the default
    suite covers compile + ``bf16-mixed`` inside a Lightning ``Trainer`` through ``test_gpu_check_smoke``.
    """
    run, s = _fit(tmp_path, model=_tiny_model_args(compile=True), trainer={"precision": "bf16-mixed"})
    _check_run(run, s)


@pytest.mark.slow
def test_fit_compile_float32_matches_eager(tmp_path):
    """Inductor on CPU in float32: the same loss curve as the eager model (rtol 1e-3)."""
    (tmp_path / "eager").mkdir()
    (tmp_path / "compiled").mkdir()
    _, eager = _fit(tmp_path / "eager")
    run, compiled = _fit(tmp_path / "compiled", model=_tiny_model_args(compile=True))
    _check_run(run, compiled)
    a = torch.tensor([v for _, v in eager["train/loss"]])
    b = torch.tensor([v for _, v in compiled["train/loss"]])
    assert torch.allclose(a, b, rtol=1e-3, atol=1e-4), (a, b)


def _fsdp_supported() -> str | None:
    """None when FSDP over gloo can run here, else the reason."""
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        return f"torch {torch.__version__} has no gloo backend"
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel  # noqa: F401
    except ImportError as exc:
        return f"torch {torch.__version__} has no FSDP: {exc}"
    import lightning as L

    try:  # Lightning decides at Trainer construction (no process is started)
        L.Trainer(accelerator="cpu", devices=2, strategy="fsdp", logger=False, enable_checkpointing=False)
    except ValueError as exc:
        return f"lightning {L.__version__} refuses FSDP on CPU: {exc}"
    return None


@pytest.mark.slow
def test_fit_fsdp_two_cpu_processes(tmp_path):
    """``--trainer.strategy fsdp`` with 2 CPU processes over gloo (what STRATEGY=fsdp in launch/ selects).

    Skipped where the installed versions cannot (Lightning 2.6.6 refuses FSDP without a GPU accelerator).
    """
    reason = _fsdp_supported()
    if reason is not None:
        pytest.skip(reason)
    run, s = _fit(tmp_path, trainer={"devices": 2, "strategy": "fsdp"}, data={"batch_size": 2})
    _check_run(run, s)


def _probes():
    from hierlatent.probes.function_vectors import FunctionVectorProbe
    from hierlatent.probes.hydra import HydraProbe
    from hierlatent.probes.icl import ICLProbe
    from hierlatent.probes.induction import InductionProbe
    from hierlatent.probes.syntax import SyntaxProbe

    return [InductionProbe(n=16, n_samples=4, ks=(1, 2)), ICLProbe(n_windows=4), HydraProbe(ks=(1, 2), n_heldout=4),
            FunctionVectorProbe(n_pairs=4, n_icl_prompts=4, n_shots=3, n_top_heads=2), SyntaxProbe(n_samples=8)]


def test_probes_in_bf16_agree_with_float32():
    """Every probe on a bfloat16 copy of a 3-layer Llama (V = 1003) agrees with float32 (module docstring)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.benchmarks.bench_probes import numbers

    torch.manual_seed(0)
    cfg = LlamaConfig(num_hidden_layers=3, hidden_size=64, num_attention_heads=4, num_key_value_heads=4,
                      intermediate_size=128, vocab_size=1003, max_position_embeddings=128)
    m32 = LlamaForCausalLM(cfg).eval()
    m16 = copy.deepcopy(m32).to(torch.bfloat16)
    heldout = torch.randint(0, 1000, (4, 64), generator=torch.Generator().manual_seed(0))
    for probe in _probes():
        with torch.no_grad():
            a, b = numbers(probe.run(m32, heldout)), numbers(probe.run(m16, heldout))
        name = type(probe).__name__
        assert len(a) == len(b) and a, name
        assert [math.isnan(x) for x in a] == [math.isnan(x) for x in b], name
        scale = max(abs(x) for x in a if not math.isnan(x))
        worst = max(abs(x - y) for x, y in zip(a, b) if not math.isnan(x))
        assert worst <= BF16_ATOL + BF16_RTOL * scale, (name, worst, scale)


def test_gpu_check_smoke(tmp_path):
    """``python -m tests.benchmarks.gpu_check --smoke``: every code path of the GPU check at tiny size on CPU, one JSON.

    Run as its README command runs it (``-m`` with the repo root importable), from a scratch directory so
    that nothing it writes lands in the checkout.
    """
    import json

    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "tests.benchmarks.gpu_check", "--smoke", "--output", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["smoke"] is True and report["device"]["type"] == "cpu"
    for key in ("train_eager", "train_compiled", "probes", "probe_olmo"):
        assert report[key]["status"] == "ok", (key, report[key])
    assert report["train_eager"]["tokens_per_s"] > 0 and report["probes"]["max_abs_diff_bf16_fp32"] >= 0
    assert len(report["probe_olmo"]["checkpoints"]) == 2
    assert report["ddp_one_gpu"]["status"].startswith("skipped")
