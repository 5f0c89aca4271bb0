"""Query-position stimuli for the toy hierarchy (docs/research.md#toy, #theory): held-out windows cropped at a [QUERY] cue.

The toy's query token is where its two latents meet (it depends on Z0 and on the segment's Z1), so the
theory experiment measures the probes there. ``query_crop`` turns held-out windows into inputs whose last
two tokens are a cue and the query token that follows it; probes that predict a window's last token from
the rest (McGrath's Hydra) then predict exactly that query token, read at the cue position.

Positions come from the corpus vocabulary's roles (``cue``, ``query``), never from typed numbers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hierlatent.errors import ProbeError


def query_crop(windows: Tensor, cue: tuple[int, int], query: tuple[int, int], where: str = "query_crop") -> Tensor:
    """Crop every window so that it ends with ``cue-token query-token``; all crops share one length.

    For window w, let p be the last position with w[p] a cue id and w[p + 1] a query id. Every window is
    cut to ``w[p + 2 − T' : p + 2]`` with T' = the smallest p + 2 over the windows, so the crops are
    equally long (about T minus one segment) and their last position is the query token.

    Args:
        windows: token ids ``[N, T]``.
        cue: half-open id range of the cue role.
        query: half-open id range of the query role.
        where: the caller, named in errors.

    Returns:
        ``[N, T']`` long tensor with ``out[:, -2]`` cue ids and ``out[:, -1]`` query ids.
    """
    if windows.ndim != 2 or windows.shape[1] < 3:
        raise ProbeError(f"{where}: windows must be [n, T >= 3], got shape {tuple(windows.shape)}")
    w = windows.long()
    is_cue = (w[:, :-1] >= cue[0]) & (w[:, :-1] < cue[1])
    is_query = (w[:, 1:] >= query[0]) & (w[:, 1:] < query[1])
    hit = is_cue & is_query  # [N, T-1]: a cue at p followed by a query at p+1
    if not bool(hit.any(1).all()):
        bad = int((~hit.any(1)).nonzero()[0])
        raise ProbeError(f"{where}: held-out window {bad} has no cue token followed by a query token")
    pos = torch.arange(hit.shape[1], device=w.device).expand_as(hit)
    last = torch.where(hit, pos, -1).amax(1)  # [N] position p of the last cue
    length = int(last.min()) + 2
    start = last + 2 - length  # [N]
    index = start[:, None] + torch.arange(length, device=w.device)[None]
    return w.gather(1, index)
