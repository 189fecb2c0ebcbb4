"""Which SAE features does one text's output rest on? Act x grad attribution,
for every model kind (the metric M is the kind's steering's: `Steering.attribution_metric`).

Attribution (one text, the kind's metric M):
    attr[pos, i] = f_i(x)[pos] * (dM/dx[pos] . d_i)
the first-order estimate of M(clean) - M(feature i ablated at pos), gradients
through the model from the hook onward.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..models import ModelHandle, TokenizedText

Metric = Callable[[ModelHandle, torch.Tensor, torch.Tensor, list], torch.Tensor]
"""metric(handle, ids [1, pos], mask, fwd_hooks) -> scalar tensor (differentiable)."""


def feature_attribution(
    handle: ModelHandle, sae, hook: str, tok: TokenizedText, metric: Metric, top: int = 20,
    n_token_features: int = 3, extra_features: tuple[int, ...] = (),
) -> dict:
    """Act x grad attribution of `metric` to the SAE features at `hook` (module docstring).

    The hook's activation is replaced by a leaf tensor requiring grad, so the
    gradient flows through the model from the hook onward. Returns
      metric         M on the clean text
      features       the `top` features by |sum over positions of attr|, descending:
                     [{feature, attribution, rank}] (rank 1-based)
      error_term     sum over kept positions of dM/dx . (x - x_hat) (the SAE error's share)
      per_token      for the top n_token_features features and `extra_features`:
                     [{feature, rank, values: attr[pos] per token (0 at special tokens)}]
      tokens, offsets, special   the text's tokens, for highlights."""
    ids = torch.tensor([tok.ids])
    mask = torch.ones_like(ids)
    x = handle.run_hooks(ids, mask, [hook])[hook][0]
    leaf = x.clone().requires_grad_(True)
    with torch.enable_grad():
        value = metric(handle, ids, mask, [(hook, lambda a, hook=None: leaf.to(a.dtype).unsqueeze(0))])
        (grad,) = torch.autograd.grad(value, leaf)
    keep = torch.tensor([0.0 if s else 1.0 for s in tok.special])[:, None]
    with torch.no_grad():
        f = sae.encode(x.to(sae.W_enc.dtype)).float()
        attr = f * keep * (grad @ sae.W_dec.detach().float().T)  # [pos, d_sae]
        error = float(((x - sae.decode(f).float()) * grad * keep).sum())
    total = attr.sum(0)
    order = torch.sort(total.abs(), descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(1, len(order) + 1)
    shown = list(dict.fromkeys([*order[:n_token_features].tolist(), *extra_features]))
    return {
        "metric": float(value.detach()),
        "features": [{"feature": int(i), "attribution": float(total[i]), "rank": int(rank[i])} for i in order[:top]],
        "error_term": error,
        "per_token": [{"feature": int(i), "rank": int(rank[i]), "values": attr[:, i].tolist()} for i in shown],
        "tokens": tok.tokens,
        "offsets": [list(o) for o in tok.offsets],
        "special": tok.special,
    }
