"""Query-position stimuli (``query_crop``, ``HydraProbe(stimulus="query")``) and the toy function-vector measure."""

from __future__ import annotations

import pytest
import torch

from hierlatent.corpora.toy import ToyHierarchy
from hierlatent.errors import ProbeError
from hierlatent.probes.hydra import HydraProbe
from hierlatent.probes.query_fv import QueryFunctionVectorProbe, query_transfer
from hierlatent.probes.query_stimuli import query_crop
from tests.probes.reference_hydra_fv import tiny_model

CUE, QUERY = (9, 10), (5, 8)  # a toy-like layout: query ids 5-7, cue 9


def test_crop_known_answer():
    w = torch.tensor([[1, 9, 5, 2, 9, 6, 3, 9],   # last cue+query at 4-5 (the final 9 has no query after it)
                      [2, 3, 9, 7, 1, 1, 1, 1]])  # cue+query at 2-3
    out = query_crop(w, CUE, QUERY)
    assert out.tolist() == [[5, 2, 9, 6], [2, 3, 9, 7]]


def test_crop_refuses_a_window_without_a_query():
    with pytest.raises(ProbeError, match="HydraProbe: held-out window 1 has no cue"):
        query_crop(torch.tensor([[9, 5, 1], [1, 2, 3]]), CUE, QUERY, where="HydraProbe")


def _toy_windows(n: int = 8, length: int = 40) -> tuple[ToyHierarchy, torch.Tensor]:
    gen = ToyHierarchy(n_evidence_tokens=6, n_query_tokens=4, segments=4, evidence_per_segment=3,
                       n_sequences=10, n_test_sequences=20, sequences_per_shard=20)
    stream = torch.from_numpy(gen.generate_shard("test", 0).astype("int64"))
    starts = torch.arange(n) * 7
    return gen, torch.stack([stream[s:s + length] for s in starts.tolist()])


def test_hydra_query_stimulus_ends_with_cue_and_query():
    gen, windows = _toy_windows()
    vocab = gen.vocabulary()
    probe = HydraProbe(ks=[1], n_heldout=8, stimulus="query", batch_size=4)
    probe.bind(vocab)
    model = tiny_model("llama", n_layers=2, vocab_size=vocab.size)
    x = probe.inputs(model, windows)
    assert (x[:, -2] == vocab.roles["cue"][0]).all()
    lo, hi = vocab.roles["query"]
    assert ((x[:, -1] >= lo) & (x[:, -1] < hi)).all()
    assert torch.equal(x, query_crop(windows, vocab.roles["cue"], vocab.roles["query"]))
    assert "mcgrath" in probe.run(model, windows)


def test_hydra_query_stimulus_unbound_is_refused():
    model = tiny_model("llama", n_layers=2, vocab_size=20)
    with pytest.raises(ProbeError, match="HydraProbe.stimulus.*not bound"):
        HydraProbe(stimulus="query").inputs(model, torch.zeros(2, 8, dtype=torch.long))


def _cue_inputs(n: int, vocab: int = 12, length: int = 7, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 9, (n, length), generator=g)
    x[:, -1] = CUE[0]
    return x


def test_fv_one_layer_model_transfers_fully():
    """One layer: replacing the cue position's attention output reproduces the source's state (transfer 1)."""
    model = tiny_model("llama", n_layers=1, vocab_size=12)
    out = query_transfer(model, _cue_inputs(6, seed=1), _cue_inputs(6, seed=2), QUERY, batch_size=4)
    assert out["kl_clean"] > 0
    assert float(out["transfer"][0]) == pytest.approx(1.0, abs=1e-9)


def test_fv_source_equal_target_shifts_nothing():
    model = tiny_model("llama", n_layers=3, vocab_size=12)
    x = _cue_inputs(5)
    out = query_transfer(model, x, x, QUERY)
    assert torch.allclose(out["shift"], torch.zeros(3, dtype=torch.float64), atol=1e-12)


def test_fv_probe_on_toy_windows():
    gen, windows = _toy_windows(n=8)
    probe = QueryFunctionVectorProbe(n_pairs=4, batch_size=8)
    probe.bind(gen.vocabulary())
    model = tiny_model("llama", n_layers=2, vocab_size=gen.vocabulary().size)
    res = probe.run(model, windows)
    assert len(res["transfer"]) == 2 and res["n_pairs"] == 4
    scal = probe.scalars({k: (v.tolist() if torch.is_tensor(v) else v) for k, v in res.items()})
    assert set(scal) == {"query_fv/transfer/layer0", "query_fv/transfer/layer1", "query_fv/transfer_max",
                         "query_fv/kl_clean"}
    with pytest.raises(ProbeError, match="n_pairs: needs 2 x 4"):
        probe.run(model, windows[:7])
