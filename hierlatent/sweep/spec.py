"""The sweep file: conditions (config files + overrides) x seeds, read and checked before anything runs.

```yaml
conditions:                          # name -> list of config files, or {configs: [...], overrides: {...}}
  pcfg: [configs/quickstart.yaml]
  ngram: [configs/quickstart_ngram.yaml]
seeds: {start: 0, stop: 5}           # or a list: [0, 1, 2]
seed_corpus: false                   # true: the seed also sets data.generator.init_args.seed
paired: false                        # true: seed s of every condition is one pair (paired tests in compare)
parallel: 2                          # default --parallel of the local launcher
fit_args: []                         # fit flags appended to every run, e.g. ["--trainer.max_steps", "20"]
```

What a seed varies: ``--seed_everything <s>``, i.e. the weight initialisation, the training data order
(the data module's sampler is seeded from it) and dropout. The corpus stays the one its config names unless
``seed_corpus: true``, because another corpus seed is another corpus to generate. Config paths are
relative to the sweep file's directory's project root: they are resolved against the current directory
first, then against the sweep file's own directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hierlatent.errors import ConfigError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_KEYS = {"conditions", "seeds", "seed_corpus", "paired", "parallel", "fit_args"}


@dataclass(frozen=True)
class Condition:
    """One condition: its config files (in order) and dotted fit overrides."""

    name: str
    configs: tuple[Path, ...]
    overrides: dict[str, Any] = field(default_factory=dict)

    def fit_flags(self) -> list[str]:
        """The condition's part of a fit command line: ``--config`` per file, then ``--key=value`` overrides."""
        flags = [f for c in self.configs for f in ("--config", str(c))]
        for key, value in self.overrides.items():
            flags.append(f"--{key}={_flag_value(value)}")
        return flags


@dataclass(frozen=True)
class SweepSpec:
    """A checked sweep file."""

    path: Path
    conditions: tuple[Condition, ...]
    seeds: tuple[int, ...]
    seed_corpus: bool = False
    paired: bool = False
    parallel: int = 1
    fit_args: tuple[str, ...] = ()


def _flag_value(value: Any) -> str:
    """A YAML value as one command-line value jsonargparse parses back to the same thing."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def _fail(path: Path, key: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: {key}: {message}")


def parse_seeds(value: Any, where: str = "seeds") -> tuple[int, ...]:
    """A seed list from a YAML list, ``{start, stop[, step]}`` or a ``"0-4"`` / ``"0,2,5"`` string.

    Args:
        value: the seeds as written.
        where: the field or flag named in errors.
    """
    if isinstance(value, str):
        value = value.strip()
        m = re.fullmatch(r"(-?\d+)\s*-\s*(-?\d+)", value)
        if m:
            value = {"start": int(m[1]), "stop": int(m[2]) + 1}
        else:
            try:
                value = [int(v) for v in value.split(",") if v.strip()]
            except ValueError:
                raise ConfigError(f"{where}: expected integers like 0,1,2 or a range 0-4, got {value!r}") from None
    if isinstance(value, dict):
        extra = set(value) - {"start", "stop", "step"}
        if extra or "stop" not in value:
            raise ConfigError(f"{where}: a range needs start/stop[/step] keys, got {sorted(value)}")
        try:
            value = list(range(int(value.get("start", 0)), int(value["stop"]), int(value.get("step", 1))))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{where}: expected a non-empty list of integer seeds or a range, got {value!r}")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value):
        raise ConfigError(f"{where}: seeds must be integers >= 0, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: seeds repeat: {value!r}")
    return tuple(value)


def _resolve(path: Path, name: str, raw: Any) -> Path:
    if not isinstance(raw, str) or not raw:
        raise _fail(path, f"conditions.{name}", f"config entries must be file paths, got {raw!r}")
    for candidate in (Path(raw), path.parent / raw):
        if candidate.is_file():
            return candidate
    raise _fail(path, f"conditions.{name}", f"config file {raw} does not exist")


def _condition(path: Path, name: Any, body: Any) -> Condition:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _fail(path, "conditions", f"condition names must be letters, digits, '_', '-', '.', got {name!r}")
    overrides: Any = {}
    if isinstance(body, dict):
        unknown = set(body) - {"configs", "overrides"}
        if unknown:
            raise _fail(path, f"conditions.{name}", f"unknown keys {sorted(unknown)} (expected configs, overrides)")
        configs, overrides = body.get("configs"), body.get("overrides") or {}
    else:
        configs = body
    if isinstance(configs, str):
        configs = [configs]
    if not isinstance(configs, list) or not configs:
        raise _fail(path, f"conditions.{name}", f"expected a non-empty list of config files, got {configs!r}")
    if not isinstance(overrides, dict) or not all(isinstance(k, str) and k for k in overrides):
        raise _fail(path, f"conditions.{name}.overrides", f"expected a mapping of dotted flags to values, got {overrides!r}")
    return Condition(name, tuple(_resolve(path, name, c) for c in configs), dict(overrides))


def _read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"sweep file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read sweep file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: malformed YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a sweep file is a mapping with conditions and seeds, got {type(raw).__name__}")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)} (expected {sorted(_KEYS)})")
    return raw


def _bool(path: Path, raw: dict, key: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise _fail(path, key, f"expected true or false, got {value!r}")
    return value


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and check a sweep file; every mistake is a ConfigError naming the file and field.

    Args:
        path: the sweep YAML.
    """
    path = Path(path)
    raw = _read_yaml(path)
    conditions = raw.get("conditions")
    if not isinstance(conditions, dict) or not conditions:
        raise _fail(path, "conditions", "expected a mapping of condition names to config files")
    if "seeds" not in raw:
        raise _fail(path, "seeds", "missing (a list of seeds or {start, stop})")
    parallel = raw.get("parallel", 1)
    if not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 1:
        raise _fail(path, "parallel", f"expected an integer >= 1, got {parallel!r}")
    fit_args = raw.get("fit_args") or []
    if not isinstance(fit_args, list) or not all(isinstance(a, (str, int, float)) for a in fit_args):
        raise _fail(path, "fit_args", f"expected a list of command-line words, got {fit_args!r}")
    return SweepSpec(
        path=path,
        conditions=tuple(_condition(path, n, b) for n, b in conditions.items()),
        seeds=parse_seeds(raw["seeds"], f"{path}: seeds"),
        seed_corpus=_bool(path, raw, "seed_corpus"),
        paired=_bool(path, raw, "paired"),
        parallel=parallel,
        fit_args=tuple(str(a) for a in fit_args),
    )
