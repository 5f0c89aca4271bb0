"""A real probe document (every probe, a tiny Llama) validates against docs/probes_schema.json, the machine-readable
form of docs/probes_json.md; a document with a wrong field does not."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import torch

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "docs" / "probes_schema.json").read_text())
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
          "integer": int, "number": (int, float)}


def _errors(node, schema: dict, where: str = "$") -> list[str]:
    """A hand check of the JSON-Schema subset the schema uses (type, enum, required, properties, items, ...)."""
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        ok = any(isinstance(node, _TYPES[t]) and not (t in ("integer", "number") and isinstance(node, bool))
                 for t in types)
        if not ok:
            return [f"{where}: {type(node).__name__} is not {types}"]
    if "enum" in schema and node not in schema["enum"]:
        return [f"{where}: {node!r} not in {schema['enum']}"]
    out = []
    if isinstance(node, dict):
        out += [f"{where}: missing {k!r}" for k in schema.get("required", []) if k not in node]
        for key, value in node.items():
            sub = schema.get("properties", {}).get(key)
            sub = sub or next((s for p, s in schema.get("patternProperties", {}).items() if re.search(p, key)), None)
            extra = schema.get("additionalProperties", True)
            if sub is None and extra is False:
                out.append(f"{where}: unexpected {key!r}")
            elif sub is not None or isinstance(extra, dict):
                out += _errors(value, sub if sub is not None else extra, f"{where}.{key}")
    if isinstance(node, list):
        if len(node) < schema.get("minItems", 0) or len(node) > schema.get("maxItems", len(node)):
            out.append(f"{where}: {len(node)} items")
        out += [e for i, v in enumerate(node) if "items" in schema for e in _errors(v, schema["items"], f"{where}[{i}]")]
    return out


@pytest.fixture(scope="module")
def document() -> dict:
    """The probe document ProbeRunner writes for a 3-layer Llama with all five probes configured."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from hierlatent.callbacks.probes import ProbeRunner
    from hierlatent.probes.function_vectors import FunctionVectorProbe
    from hierlatent.probes.hydra import HydraProbe
    from hierlatent.probes.icl import ICLProbe
    from hierlatent.probes.induction import InductionProbe
    from hierlatent.probes.syntax import SyntaxProbe

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=1003, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64))
    probes = [InductionProbe(n=8, n_samples=2, ks=[1, 2], aggregate="per_sample_max"), ICLProbe(n_windows=2),
              HydraProbe(n_heldout=2, headwise=True), SyntaxProbe(n_samples=4),
              FunctionVectorProbe(n_pairs=2, n_top_heads=2, n_icl_prompts=2, n_shots=2)]
    runner = ProbeRunner(probes, log_images=False, write_json=False)
    doc = runner.probe_model(model.eval(), step=3, tokens=96, heldout=torch.randint(0, 1000, (2, 32)))
    return json.loads(json.dumps(doc))  # exactly what atomic_write_json stores


def test_real_document_validates(document):
    assert {"induction", "hydra", "function_vectors", "syntax"} <= set(document)
    assert _errors(document, SCHEMA) == []
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(document, SCHEMA)


def test_wrong_fields_are_caught(document):
    bad = copy.deepcopy(document)
    bad["hydra"]["mcgrath"]["ablation"] = "resample"
    del bad["syntax"]["subject_after_svoc"]
    bad["hydra"]["paper"]["k1"]["first"] = 0.0
    errors = _errors(bad, SCHEMA)
    assert any("ablation" in e for e in errors) and any("subject_after_svoc" in e for e in errors)
    assert any("'first'" in e for e in errors)
