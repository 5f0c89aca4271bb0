"""How each cost grows with its work: every row measured at three sizes or more, with its log-log growth exponent.

Rows (``--rows`` picks some; ``--quick`` shrinks every size list):
- ``generation``: ``hierlatent generate`` of the quickstart's PCFG documents at growing ``n_documents``, one
  worker, each size in a fresh subprocess. Time = the corpus's own ``generation.seconds`` (meta.json: the
  shards, not the interpreter start); peak memory = the subprocess's max RSS (``os.wait4``), which must stay
  flat: generation streams shard by shard.
- ``probes/size``: the induction, Hydra (paper Δ k = 1, 2 + McGrath, shared prefix) and paper FV probes on random
  Llamas of growing layers × width, fixed stimuli; work = non-embedding parameters (∝ L·d²).
- ``probes/stimuli``: the same probes on a fixed 4×128 Llama with growing stimuli (windows, samples, pairs).
- ``probe-olmo``: the real CLI over 1…N random OLMo checkpoints (4 layers × 256, induction + Hydra with the OLMo
  stimuli of ``bench_probe_olmo.py``), 1 process and 2 (DDP over gloo).
- ``sweep``: ``hierlatent sweep`` wall time over 1…N runs of a seconds-long fit, at P = 1 and P = 2.

The exponent is the least-squares slope of log(cost) against log(work); the work of every row is linear in
its size, so an exponent above 1.15 (0.10 for memory, which should not grow at all) is flagged as growing worse
than its work: a defect to investigate. Fixed costs (interpreter and torch start-up, a process per run) make
the exponents of the CLI rows well below 1; the ``per unit`` column (slope of a straight-line fit) gives
their marginal cost. In-process (probe) times are this process's CPU seconds, the minimum of ``--repeats``
calls after one warm-up (one torch thread: the least noisy estimate on a shared machine); subprocess rows are
wall seconds, measured once, after one warm-up generation that compiles the numba kernels.

    # from the repository root (-m makes tests.* importable):
    OMP_NUM_THREADS=1 python -m tests.benchmarks.bench_scaling            # a few minutes on 2 cores
    OMP_NUM_THREADS=1 python -m tests.benchmarks.bench_scaling --quick    # smaller sizes
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LIMITS = {"time": 1.15, "memory": 0.10}  # the largest exponent that is not worse than the (linear) work


@dataclass
class Row:
    """One cost measured at several sizes: ``work`` (linear in the size), its ``labels`` and the costs."""

    name: str
    unit: str
    kind: str  # "time" or "memory" (sets the limit)
    labels: list[str] = field(default_factory=list)
    work: list[float] = field(default_factory=list)
    cost: list[float] = field(default_factory=list)

    def add(self, label: str, work: float, cost: float) -> None:
        """Record one size."""
        self.labels.append(label)
        self.work.append(float(work))
        self.cost.append(float(cost))

    def exponent(self) -> float:
        """Least-squares slope of log(cost) against log(work)."""
        return fit([math.log(w) for w in self.work], [math.log(max(c, 1e-12)) for c in self.cost])[0]

    def per_unit(self) -> float:
        """Marginal cost per unit of work (slope of a straight-line fit)."""
        return fit(self.work, self.cost)[0]

    def flagged(self) -> bool:
        """Grows worse than its work."""
        return self.exponent() > LIMITS[self.kind]


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares (slope, intercept) of ys against xs."""
    n, mx, my = len(xs), sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if n > 1 and sxx else math.nan
    return slope, my - slope * mx


def child_env(tmp: Path) -> dict[str, str]:
    """This checkout (and tests/ for the test-only corpus class) importable, a private corpus cache."""
    path = os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "HIERLATENT_CACHE": str(tmp / "cache"), "TQDM_DISABLE": "1",
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def run_cli(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int]:
    """Run ``hierlatent ARGS`` (its console entry point, ``hierlatent.commands``, by this interpreter): (wall
    seconds, peak RSS in KiB of it and its waited-for children)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "hierlatent.commands", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"hierlatent {' '.join(args)} exited {proc.returncode}:\n{err[-3000:]}")
    return time.perf_counter() - t0, usage.ru_maxrss


# -- rows ---------------------------------------------------------------------------------------------------
def generation_rows(sizes: list[int], tmp: Path) -> list[Row]:
    """Generation seconds and peak RSS against corpus tokens, one fresh subprocess and cache per size."""
    time_row, mem_row = Row("generation time", "s", "time"), Row("generation peak RSS", "MiB", "memory")
    # warm-up: a fresh checkout compiles (and caches) the numba kernels in the first process that runs them
    run_cli(["generate", "--config", str(ROOT / "configs/quickstart.yaml"), "--data.generator.init_args.n_documents",
             "100", "--data.generation_workers", "1"], tmp, child_env(tmp / "gen-warm-up"))
    for n in sizes:
        env = child_env(tmp / f"gen-{n}")
        _, rss = run_cli(["generate", "--config", str(ROOT / "configs/quickstart.yaml"),
                          "--data.generator.init_args.n_documents", str(n), "--data.generation_workers", "1"], tmp, env)
        meta = json.loads(Path(glob.glob(f"{env['HIERLATENT_CACHE']}/corpora/*/meta.json")[0]).read_text())
        tokens = sum(meta["n_tokens"].values())
        time_row.add(f"{tokens / 1e6:.1f}M tok", tokens, meta["generation"]["seconds"])
        mem_row.add(f"{tokens / 1e6:.1f}M tok", tokens, rss / 1024)
    return [time_row, mem_row]


def llama(layers: int, width: int):
    """A random Llama with the paper's vocabulary (1003) and 4 heads; its non-embedding parameter count."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(num_hidden_layers=layers, hidden_size=width, num_attention_heads=4, num_key_value_heads=4,
                      intermediate_size=4 * width, vocab_size=1003, max_position_embeddings=512)
    model = LlamaForCausalLM(cfg).eval()
    return model, sum(p.numel() for n, p in model.named_parameters() if "embed" not in n and "lm_head" not in n)


def probe_calls(model, stimuli: int, window: int = 128) -> dict:
    """name -> zero-argument call of each probe on ``stimuli`` windows / samples / pairs."""
    import torch

    from hierlatent.probes.function_vectors import FunctionVectorProbe
    from hierlatent.probes.hydra import HydraProbe
    from hierlatent.probes.induction import InductionProbe

    heldout = torch.randint(0, 1000, (stimuli, window), generator=torch.Generator().manual_seed(0))
    induction = InductionProbe(n=32, n_samples=stimuli, ks=(1,))
    hydra = HydraProbe(ks=(1, 2), n_heldout=stimuli)
    fv = FunctionVectorProbe(n_pairs=stimuli, todd=False)
    return {"induction": lambda: induction.run(model), "hydra": lambda: hydra.run(model, heldout),
            "fv": lambda: fv.run(model)}


def cpu_seconds(call) -> float:
    """This process's CPU seconds for one call (one torch thread: its work, whatever else shares the cores)."""
    t0 = time.process_time()
    call()
    return time.process_time() - t0


def least_cpu(call, repeats: int) -> float:
    """Minimum CPU seconds of ``repeats`` calls after one warm-up."""
    call()
    return min(cpu_seconds(call) for _ in range(repeats))


def probe_rows(shapes: list[tuple[int, int]], stimuli: list[int], repeats: int,
               base: tuple[int, int] = (4, 128)) -> list[Row]:
    """Per probe: CPU seconds against layers × width (fixed 8 stimuli) and against stimuli (fixed ``base``)."""
    rows: dict[str, Row] = {}
    for layers, width in shapes:
        model, params = llama(layers, width)
        for name, call in probe_calls(model, 8).items():
            row = rows.setdefault(f"size {name}", Row(f"{name} vs layers x width", "s", "time"))
            row.add(f"{layers}x{width}", params, least_cpu(call, repeats))
    model, _ = llama(*base)
    for n in stimuli:
        for name, call in probe_calls(model, n).items():
            row = rows.setdefault(f"stim {name}", Row(f"{name} vs stimuli", "s", "time"))
            row.add(f"{n}", n, least_cpu(call, repeats))
    return list(rows.values())


def probe_olmo_rows(counts: list[int], procs: list[int], tmp: Path) -> list[Row]:
    """``probe-olmo`` wall seconds against checkpoints, with 1 and 2 processes."""
    from tests.benchmarks.bench_probe_olmo import PROBES_YAML, build

    config = tmp / "olmo-probes.yaml"
    config.write_text(PROBES_YAML.format(samples=20, random=10))  # bench_probe_olmo's OLMo stimuli
    for n in counts:
        build(tmp / f"olmo-{n}", n, 256, 4)  # checkpoint i is seeded by i: the first n of every size are the same
    rows = []
    for p in procs:
        row = Row(f"probe-olmo, {p} process{'es' if p > 1 else ''}", "s", "time")
        for n in counts:
            args = ["probe-olmo", "--config", str(config), "--checkpoints", str(tmp / f"olmo-{n}"), "--output_dir",
                    str(tmp / f"olmo-out-{n}-{p}"), "--trainer.accelerator", "cpu", "--trainer.devices", str(p),
                    "--trainer.logger", "false"] + (["--trainer.strategy", "ddp"] if p > 1 else [])
            row.add(f"{n} ckpt", n, run_cli(args, tmp, child_env(tmp))[0])
        rows.append(row)
    return rows


def sweep_rows(counts: list[int], parallel: list[int], tmp: Path) -> list[Row]:
    """``hierlatent sweep`` wall seconds against runs (seeds of a 12-step tiny fit) at each parallelism."""
    import yaml

    from tests.hltest import tiny_fit_config

    (tmp / "tiny.yaml").write_text(yaml.safe_dump(tiny_fit_config(checkpoint={"every_n_train_steps": 12})))
    rows = []
    for p in parallel:
        row = Row(f"sweep, P={p}", "s", "time")
        for n in counts:
            spec = tmp / f"sweep-{n}-{p}.yaml"
            spec.write_text(yaml.safe_dump({"conditions": {"a": ["tiny.yaml"]}, "seeds": list(range(n)),
                                            "parallel": p}))
            row.add(f"{n} runs", n, run_cli(["sweep", spec.name, "--output_dir", f"sweep-out-{n}-{p}"], tmp,
                                            child_env(tmp))[0])
        rows.append(row)
    return rows


# -- report -------------------------------------------------------------------------------------------------
def report(rows: list[Row]) -> list[str]:
    """The table lines and, last, the ``scaling:`` summary line."""
    lines = [f"{'row':34s} {'sizes':44s} {'costs':40s} {'exp':>5s} {'per unit':>10s}  verdict"]
    for r in rows:
        sizes = " ".join(r.labels)
        costs = " ".join(f"{c:.3g}" for c in r.cost) + f" {r.unit}"
        verdict = f"WORSE THAN WORK (limit {LIMITS[r.kind]})" if r.flagged() else "ok"
        lines.append(f"{r.name:34s} {sizes:44s} {costs:40s} {r.exponent():5.2f} {r.per_unit():10.3g}  {verdict}")
    flagged = [r.name for r in rows if r.flagged()]
    lines.append("scaling: " + ("all rows grow no worse than their work" if not flagged
                                else "worse than their work: " + "; ".join(flagged)))
    return lines


def main(argv: list[str] | None = None) -> list[Row]:
    """Measure the chosen rows, print the table; returns the rows."""
    import torch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", nargs="+", default=["generation", "probes", "probe-olmo", "sweep"],
                   choices=["generation", "probes", "probe-olmo", "sweep"])
    p.add_argument("--quick", action="store_true", help="smaller sizes (each row still has three)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per in-process size (minimum reported)")
    args = p.parse_args(argv)
    q = args.quick
    print(f"threads={torch.get_num_threads()} cores={os.cpu_count()} load={os.getloadavg()[0]:.1f} "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} quick={q}", flush=True)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        if "generation" in args.rows:
            rows += generation_rows([500, 1000, 2000] if q else [2000, 8000, 32000, 64000], tmp)
        if "probes" in args.rows:
            rows += probe_rows([(3, 32), (4, 64), (8, 128)] if q else [(4, 64), (8, 128), (16, 256)],
                               [2, 4, 8] if q else [8, 16, 32, 64], args.repeats)
        if "probe-olmo" in args.rows:
            rows += probe_olmo_rows([1, 2, 3] if q else [1, 2, 4], [1, 2], tmp)
        if "sweep" in args.rows:
            rows += sweep_rows([1, 2, 3] if q else [1, 2, 4], [1, 2], tmp)
    print("\n".join(report(rows)))
    return rows


if __name__ == "__main__":
    main()
