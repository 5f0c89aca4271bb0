"""Every user mistake tried on the real ``hierlatent`` command: one ``error:`` line, exit 2, no traceback.

One table (``MISTAKES``: id, arguments, a fragment the message must contain) and one parametrised test
that runs the installed console script in a fresh process, in a directory holding the small files the
rows refer to. Every row must also fail before any corpus is generated and before a run directory is
created. Add a row for every new mistake found and for every new command.
"""

from __future__ import annotations

import pytest
import yaml

from hltest import run_hierlatent, tiny_fit_config

PROBE_RUNNER = "hierlatent.callbacks.probes.ProbeRunner"


def _probes(*probes: dict, **runner: object) -> dict:
    """A config adding one ProbeRunner with ``probes`` (class_path/init_args dicts)."""
    return {"trainer": {"callbacks": [{"class_path": PROBE_RUNNER, "init_args": {"probes": list(probes), **runner}}]}}


def _probe(name: str, **init_args: object) -> dict:
    return {"class_path": f"hierlatent.probes.{name}", "init_args": init_args}


FILES = {
    "tiny.yaml": tiny_fit_config(),
    "induction_ks.yaml": _probes(_probe("induction.InductionProbe", n=8, ks=[1, 9])),
    "every0.yaml": _probes(_probe("icl.ICLProbe"), every_n_steps=0),
    "hydra_k.yaml": _probes(_probe("hydra.HydraProbe", ks=[5])),  # the tiny model has 2 layers
    "induction_n.yaml": _probes(_probe("induction.InductionProbe", n=40, ks=[1])),  # 2n > context 16
    "token_high.yaml": _probes(_probe("induction.InductionProbe", n=4, ks=[1], token_low=0, token_high=5000)),
    "fv_layer.yaml": _probes(_probe("function_vectors.FunctionVectorProbe", fv_layer=7, connector=1,
                                    subject_range=[2, 10], verb_range=[10, 20], object_range=[20, 30], todd=False)),
    "no_probes.yaml": _probes(),
}
OLMO = ["probe-olmo", "--trainer.callbacks+=" + PROBE_RUNNER, "--trainer.callbacks.probes+=hierlatent.probes.icl.ICLProbe"]
FIT = ["fit", "--config", "tiny.yaml"]

#: (id, arguments, fragment of the one error line)
MISTAKES = [
    # -- the front door (no Lightning import) --
    ("unknown-subcommand", ["fitt"], "unknown subcommand 'fitt'"),
    # -- parser: types, keys, choices, class paths --
    ("wrong-type", [*FIT, "--model.d_model", "x"], "--model.d_model: expected int, got x"),
    ("bad-choice", [*FIT, "--model.architecture", "mamba"], "--model.architecture"),
    ("unknown-key", [*FIT, "--model.no_such_key", "1"], "--model.no_such_key"),
    ("abbreviated-flag", [*FIT, "--model.n_lay", "2"], "did you mean --model.n_layers?"),
    ("abbreviated-trainer-flag", [*FIT, "--trainer.max_step", "3"], "did you mean --trainer.max_steps?"),
    ("bad-class-path", [*FIT, "--data.generator.class_path", "nosuch.Module"], "--data.generator"),
    ("bad-precision", [*FIT, "--trainer.precision", "77"], "--trainer.precision: invalid value 77"),
    ("bad-seed", [*FIT, "--seed_everything", "abc"], "--seed_everything"),
    # -- config files --
    ("missing-config", ["fit", "--config", "missing.yaml"], "--config: file missing.yaml does not exist"),
    ("malformed-yaml", ["fit", "--config", "bad.yaml"], "--config: bad.yaml:4:1: malformed YAML"),
    ("binary-config", ["fit", "--config", "binary.yaml"], "--config: binary.yaml is not a text file"),
    ("directory-config", ["fit", "--config", "adir"], "--config: adir is a directory"),
    ("list-config", ["fit", "--config", "list.yaml"], "not a mapping of config keys"),
    # -- model and data values --
    ("d_model-not-divisible", [*FIT, "--model.d_model", "30"], "--model.d_model"),
    ("heads-not-dividing", [*FIT, "--model.n_heads", "3"], "--model.d_model"),
    ("context-too-long", [*FIT, "--model.context_window", "8192"], "--model.context_window"),
    ("every_fraction", [*FIT, "--checkpoint.every_fraction", "2.0"], "--checkpoint.every_fraction"),
    ("lr", [*FIT, "--model.lr", "5"], "--model.lr"),
    # -- trainer flags Lightning accepted silently or failed on late --
    ("strategy", [*FIT, "--trainer.strategy", "bogus"], "--trainer.strategy: unknown strategy 'bogus'"),
    ("max_steps", [*FIT, "--trainer.max_steps", "-5"], "--trainer.max_steps"),
    ("accumulate", [*FIT, "--trainer.accumulate_grad_batches", "0"], "--trainer.accumulate_grad_batches"),
    ("val_check_float", [*FIT, "--trainer.val_check_interval", "5.0"], "--trainer.val_check_interval"),
    ("log_every", [*FIT, "--trainer.log_every_n_steps", "-1"], "--trainer.log_every_n_steps"),
    ("limit_val", [*FIT, "--trainer.limit_val_batches", "-2"], "--trainer.limit_val_batches"),
    # -- checkpoints --
    ("ckpt-missing", [*FIT, "--ckpt_path", "missing.ckpt"], "--ckpt_path: checkpoint file missing.ckpt does not exist"),
    ("ckpt-directory", [*FIT, "--ckpt_path", "adir"], "--ckpt_path: adir is a directory"),
    ("ckpt-not-a-checkpoint", [*FIT, "--ckpt_path", "bad.yaml"], "--ckpt_path"),
    # -- callbacks and probes: constructor errors and checks against the model, before the corpus --
    ("probe-constructor", [*FIT, "--config", "induction_ks.yaml"], "InductionProbe.ks"),
    ("runner-constructor", [*FIT, "--config", "every0.yaml"], "ProbeRunner.every_n_steps"),
    ("runner-no-probes", [*FIT, "--config", "no_probes.yaml"], "ProbeRunner.probes"),
    ("hydra-k-beyond-layers", [*FIT, "--config", "hydra_k.yaml"], "HydraProbe.ks"),
    ("induction-n-beyond-context", [*FIT, "--config", "induction_n.yaml"], "InductionProbe"),
    ("token_high-beyond-vocab", [*FIT, "--config", "token_high.yaml"], "token_high"),
    ("fv_layer", [*FIT, "--config", "fv_layer.yaml"], "fv_layer"),
    # -- probe-olmo --
    ("olmo-output-is-file", [*OLMO, "--checkpoints", "ckpts", "--output_dir", "tiny.yaml"], "--output_dir: tiny.yaml exists"),
    ("olmo-heldout-missing", [*OLMO, "--checkpoints", "ckpts", "--output_dir", "out", "--heldout", "/nonexistent"], "--heldout"),
    ("olmo-checkpoints-missing", [*OLMO, "--checkpoints", "nowhere", "--output_dir", "out"], "--checkpoints"),
    # -- plot --
    ("plot-runs-missing", ["plot", "--runs", "/nonexistent"], "--runs"),
    ("plot-wrong-type", ["plot", "--dpi", "x"], "--dpi: expected int, got x"),
    ("plot-abbreviated", ["plot", "--run", "a"], "did you mean --runs?"),
    ("plot-format", ["plot", "--formats", "gif2"], "--formats"),
    # -- verify --
    ("verify-not-a-corpus", ["verify", "adir"], "adir"),
    ("verify-missing", ["verify", "/nonexistent"], "/nonexistent is not a directory"),
    ("verify-no-args", ["verify"], "expected one corpus directory"),
    ("verify-two-args", ["verify", "adir", "bdir"], "expected one corpus directory, got bdir"),
    # -- sweep and compare --
    ("sweep-no-args", ["sweep"], "required"),
    ("sweep-missing-file", ["sweep", "missing.yaml", "--output_dir", "out"], "missing.yaml does not exist"),
    ("sweep-not-a-sweep", ["sweep", "tiny.yaml", "--output_dir", "out"], "unknown keys"),
    ("sweep-unknown-flag", ["sweep", "tiny.yaml", "--bogus"], "--bogus"),
    ("compare-nothing", ["compare"], "give a sweep directory"),
    ("compare-not-a-sweep", ["compare", "adir"], "no manifest.json"),
    ("compare-unknown-flag", ["compare", "--run", "a"], "--run"),
    ("sweep-wrong-type", ["sweep", "tiny.yaml", "--output_dir", "out", "--parallel", "abc"], "--parallel: invalid value abc"),
    ("sweep-bad-choice", ["sweep", "tiny.yaml", "--output_dir", "out", "--launcher", "pbs"], "--launcher: expected one of 'local', 'slurm', got pbs"),
    ("sweep-abbreviated", ["sweep", "tiny.yaml", "--output_dir", "out", "--parallell", "2"], "did you mean --parallel?"),
    ("compare-wrong-type", ["compare", "adir", "--paired", "maybe"], "--paired: invalid value maybe"),
    ("compare-bad-choice", ["compare", "adir", "--steps", "middle"], "--steps: expected one of 'all', 'final', got middle"),
    ("compare-abbreviated", ["compare", "adir", "--metric", "x"], "did you mean --metrics?"),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A directory with the files the rows name (configs, a binary file, a directory, a checkpoint tree)."""
    root = tmp_path_factory.mktemp("mistakes")
    for name, cfg in FILES.items():
        (root / name).write_text(yaml.safe_dump(cfg))
    (root / "bad.yaml").write_text("model:\n  d_model: [1,\n  x: 2\n")
    (root / "binary.yaml").write_bytes(bytes(range(256)))
    (root / "list.yaml").write_text("- 1\n- 2\n")
    (root / "adir").mkdir()
    (root / "ckpts" / "step-10").mkdir(parents=True)
    return root


#: rows run by default: one or two per kind of mistake, and every row of the commands that need no torch
#: (each fit row is a fresh process that imports torch and Lightning, ~5-10 s); the rest run with -m slow
DEFAULT_ROWS = {"unknown-subcommand", "wrong-type", "abbreviated-flag", "missing-config", "malformed-yaml",
                "binary-config", "strategy", "accumulate", "val_check_float", "ckpt-directory", "probe-constructor",
                "hydra-k-beyond-layers", "olmo-output-is-file"}


def _row(m: tuple) -> object:
    light = m[1][0] in ("plot", "verify", "sweep", "compare")
    marks = () if light or m[0] in DEFAULT_ROWS else (pytest.mark.slow,)
    return pytest.param(*m[1:], id=m[0], marks=marks)


@pytest.mark.parametrize("args, fragment", [_row(m) for m in MISTAKES])
def test_mistake_one_line_exit_2(workdir, tmp_path, monkeypatch, args, fragment):
    cache = tmp_path / "cache"
    monkeypatch.setenv("HIERLATENT_CACHE", str(cache))
    out = run_hierlatent(args, cwd=workdir, check=False)
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr and "usage:" not in out.stderr, out.stderr[-3000:]
    assert len(errors) == 1 and fragment in errors[0], out.stderr[-3000:]
    assert not (cache / "corpora").exists()  # refused before any generation
    assert not (workdir / "runs").exists()
