"""Builders of small fake logs in the real formats: fit run dirs and probe-olmo output dirs.

Fit runs get TensorBoard event files written by torch's SummaryWriter (what Lightning's TensorBoardLogger
uses) with the training tags of docs/ARCHITECTURE.md, a LightningCLI-style ``config.yaml``, an
``hparams.yaml`` and ``probes/step-<N>.json``. OLMo dirs get ``<revision>/probes.json``, ``manifest.json``
and a ``step,loss`` CSV. The values are plausible and deterministic so tests can check them exactly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

N_LAYERS = 4
CLASS_PATHS = {
    "PCFG": "hierlatent.corpora.pcfg.PCFGDocuments",
    "N-gram": "hierlatent.corpora.ngram.NGramCorpus",
    "Toy": "hierlatent.corpora.toy.ToyHierarchy",
}
# the keys the corpora really log (PCFGDocuments.reference_losses, NGramCorpus / ToyHierarchy bayes_optimal*)
REFERENCES = {"PCFG": {"latent_known": 3.9, "role_unigram": 4.87}, "N-gram": {"bayes_optimal": 1.7, "bayes_optimal_stderr": 0.01},
              "Toy": {"bayes_optimal": 0.9, "bayes_optimal_stderr": 0.02}}
OLMO_REVISIONS = ["step1000-tokens4B", "step10000-tokens42B", "step100000-tokens419B", "step738020-tokens3095B"]


def write_scalars(log_dir: Path, scalars: dict[str, list[tuple[int, float]]], suffix: str = "", purge_step: int | None = None) -> None:
    """Write one event file with ``tag -> [(step, value)]`` scalars (SummaryWriter, like Lightning).

    ``purge_step`` is what a resumed run's writer gets: earlier events at steps >= it become orphans.
    """
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(log_dir), filename_suffix=suffix, purge_step=purge_step)
    for tag, rows in scalars.items():
        for step, value in rows:
            writer.add_scalar(tag, value, global_step=step)
    writer.close()


def hydra_delta(corpus: str, layer: int, step: int) -> float:
    """Paper-faithful Hydra delta: PCFG negative (compensation), N-gram positive (none), as in docs/research.md#hydra-paper."""
    sign = -1.0 if corpus in ("PCFG", "OLMo") else 1.0
    return sign * (0.5 + layer) * (1 + math.log10(1 + step))


def probe_json(corpus: str, step: int, tokens: int, with_fv: bool) -> dict:
    """A probe-JSON dict of the documented schema with plausible values for one checkpoint."""
    t = 1 - math.exp(-step / 300)  # induction grows over training
    probe = {
        "step": step,
        "tokens": tokens,
        "induction": {
            "k_order": [round(t * (1 - 0.07 * k), 6) for k in range(10)],
            "standard": 0.9 * t,
            "duplicate": 0.5 * t + 0.1,
            "previous": 0.8 - 0.2 * t,
            "icl": {"score": -0.5 * t, "early_position": 50, "late_position": 500},
        },
        "hydra": {
            "paper": {
                "k1": {str(l): hydra_delta(corpus, l, step) for l in range(1, N_LAYERS)},
                "k2": {str(l): hydra_delta(corpus, l, step) / 2 for l in range(2, N_LAYERS)},
                "final_norm": False,
            },
            "mcgrath": {"compensation": [0.1 * l * t for l in range(N_LAYERS)], "ablation": "zero", "positions": "last"},
        },
    }
    if corpus == "OLMo":  # the research code's per-sample max mode reports a std over samples
        probe["induction"]["k_order_std"] = [0.05] * 10
    if with_fv:
        probe["function_vectors"] = {"improvement": [0.3 * l * t - 0.1 for l in range(N_LAYERS)],
                                     "improvement_stderr": [0.05] * N_LAYERS, "n_pairs": 16}
    return probe


def make_fit_run(root: Path, corpus: str, name: str | None = None, probe_steps=(0, 100, 200, 300), max_step: int = 300) -> Path:
    """A TensorBoardLogger version dir ``<root>/<name>/version_0`` of a fit run on ``corpus``.

    Args:
        root: the logger's save_dir.
        corpus: "PCFG", "N-gram" or "Toy" (sets config.yaml's generator class_path).
        name: experiment name (default: the corpus in lower case).
        probe_steps: steps with a probes/step-<N>.json; empty for a run without probes.
        max_step: last training step logged.
    """
    run = root / (name or corpus.lower()) / "version_0"
    run.mkdir(parents=True)
    refs = REFERENCES[corpus]
    floor = min(v for k, v in refs.items() if not k.endswith("_stderr"))
    train = [(s, floor + 0.3 + 3 * math.exp(-s / 80)) for s in range(0, max_step + 1, 10)]
    val = [(s, floor + 0.35 + 3 * math.exp(-s / 80)) for s in range(50, max_step + 1, 50)]
    scalars = {"train/loss": train, "val/loss": val, "train/lr": [(s, 5e-5) for s, _ in train]}
    scalars.update({f"reference/{k}": [(0, v)] for k, v in refs.items()})
    write_scalars(run, scalars)
    (run / "config.yaml").write_text(
        f"seed_everything: 0\ndata:\n  generator:\n    class_path: {CLASS_PATHS[corpus]}\n    init_args:\n      seed: 0\n"
        "  context_window: 64\nmodel:\n  architecture: llama\n  n_layers: 4\n"
    )
    (run / "hparams.yaml").write_text("architecture: llama\nn_layers: 4\nvocab_size: 1003\n")
    for step in probe_steps:
        path = run / "probes" / f"step-{step}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(probe_json(corpus, step, step * 4096, with_fv=corpus == "PCFG")))
    return run


def make_olmo_dir(root: Path, revisions=OLMO_REVISIONS) -> Path:
    """A probe-olmo output dir with ``<revision>/probes.json`` and ``manifest.json``."""
    from hierlatent.revisions import parse_revision

    root.mkdir(parents=True)
    entries = []
    for rev in revisions:
        step, tokens = parse_revision(rev)
        (root / rev).mkdir()
        (root / rev / "probes.json").write_text(json.dumps(probe_json("OLMo", step, tokens, with_fv=False)))
        entries.append({"revision": rev, "step": step, "tokens": tokens, "status": "done"})
    (root / "manifest.json").write_text(json.dumps({"model": "allenai/OLMo-1B-hf", "revisions": entries}))
    return root


def make_loss_csv(path: Path, steps=(1000, 10000, 100000, 738020)) -> Path:
    """An OLMo ``step,loss`` CSV with a header."""
    path.write_text("step,loss\n" + "".join(f"{s},{4.0 - 0.4 * math.log10(s):.4f}\n" for s in steps))
    return path
