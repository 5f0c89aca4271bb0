"""In-context learning score (Olsson et al. 2022; docs/research.md#icl): loss at a late token minus loss at an early token.

Measured on held-out corpus windows: a model that uses its context predicts late tokens better, so the
score is negative and falls when induction heads form. Olsson et al. use the 500th vs the 50th token of
contexts of 1024+; here the defaults scale with the window length T (capped at the model's context):
late = T − 1 (the last token), early = T // 10 (at least 1). Positions index the *predicted* token, so
the loss at position p is −log P(x[p] | x[:p]).

Random tokens have no in-context structure beyond copying, so there is no random-token fallback: the probe
needs held-out windows (synthetic runs get them from the data module; on OLMo pass natural-text windows or
leave this probe out).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from hierlatent.errors import ProbeError
from hierlatent.probes.adapter import ModelAdapter, logits_at
from hierlatent.probes.base import Probe


def token_losses(model: nn.Module, windows: Tensor, positions: Tensor, batch_size: int | None = None) -> Tensor:
    """Per-window next-token loss at given target positions.

    Args:
        model: HF causal LM.
        windows: token ids ``[N, T]``.
        positions: target positions ``[P]``, each in 1…T−1.
        batch_size: windows per forward (None = all at once).

    Returns:
        ``[N, P]`` float64 losses −log P(x[p] | x[:p]).
    """
    windows = windows.to(positions.device)
    logits = logits_at(model, windows, positions - 1, batch_size).double()  # [N, P, V]
    targets = windows[:, positions].to(logits.device)  # [N, P]
    return -logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


class ICLProbe(Probe):
    """In-context learning score: mean loss at a late position minus mean loss at an early one.

    Args:
        n_windows: held-out windows used (the first ``n_windows`` the runner provides).
        early_position: early target position; None = T // 10 (at least 1) for windows of length T.
        late_position: late target position; None = T − 1.
        batch_size: windows per forward (None = all at once).
        seed: unused by the computation (held-out windows are chosen by the runner); kept for a uniform config.
    """

    name = "induction.icl"
    needs_heldout = True

    def __init__(self, n_windows: int = 100, early_position: int | None = None, late_position: int | None = None,
                 batch_size: int | None = 16, seed: int = 0) -> None:
        for field, value in (("n_windows", n_windows), ("early_position", early_position),
                             ("late_position", late_position), ("batch_size", batch_size)):
            if value is None and field != "n_windows":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ProbeError(f"ICLProbe.{field}: must be an integer >= 1, got {value!r}")
        if early_position is not None and late_position is not None and early_position >= late_position:
            raise ProbeError(f"ICLProbe.early_position: {early_position} must be below late_position = {late_position}")
        self.n_windows, self.early_position, self.late_position = n_windows, early_position, late_position
        self.batch_size, self.seed = batch_size, seed

    def positions(self, length: int) -> tuple[int, int]:
        """(early, late) target positions for windows of ``length`` tokens; ProbeError if they do not fit.

        Args:
            length: window length T.
        """
        late = length - 1 if self.late_position is None else self.late_position
        early = max(1, length // 10) if self.early_position is None else self.early_position
        if late > length - 1:
            raise ProbeError(f"ICLProbe.late_position: {late} does not fit windows of {length} tokens "
                             f"(max {length - 1})")
        if early >= late:
            raise ProbeError(f"ICLProbe.early_position: {early} must be below late_position = {late} "
                             f"(windows of {length} tokens)")
        return early, late

    def validate(self, adapter: ModelAdapter) -> None:
        """Explicit positions must lie inside the model's context.

        Args:
            adapter: the model's adapter.
        """
        context = adapter.max_positions
        for field, value in (("late_position", self.late_position), ("early_position", self.early_position)):
            if context is not None and value is not None and value >= context:
                raise ProbeError(f"ICLProbe.{field}: {value} is outside the model's context {context}")

    def run(self, model: nn.Module, heldout: Tensor | None = None) -> dict[str, Any]:
        """The ``induction.icl`` fragment: ``{"score", "early_position", "late_position"}``.

        Args:
            model: HF causal LM.
            heldout: held-out windows ``[n, T]`` (required).
        """
        adapter = ModelAdapter.from_model(model)
        self.validate(adapter)
        if heldout is None:
            raise ProbeError("ICLProbe: needs held-out windows (heldout=None); random tokens carry no "
                             "in-context signal to measure — give the runner a data module or drop this probe")
        if heldout.ndim != 2 or heldout.shape[0] < 1 or heldout.shape[1] < 3:
            raise ProbeError(f"ICLProbe: heldout windows must be [n >= 1, T >= 3], got shape {tuple(heldout.shape)}")
        windows = heldout[: self.n_windows, : adapter.max_positions or heldout.shape[1]].long()
        if int(windows.min()) < 0 or int(windows.max()) >= adapter.vocab_size:
            raise ProbeError(f"ICLProbe: heldout token ids must lie in [0, {adapter.vocab_size})")
        early, late = self.positions(windows.shape[1])
        losses = token_losses(model, windows, torch.tensor([early, late], device=adapter.device), self.batch_size)
        mean = losses.mean(0)  # [N, 2] -> [2]
        return {"score": mean[1] - mean[0], "early_position": early, "late_position": late}

    def scalars(self, result: dict[str, Any]) -> dict[str, float]:
        """``induction/icl``.

        Args:
            result: the output of ``run``.
        """
        return {"induction/icl": float(result["score"])}
