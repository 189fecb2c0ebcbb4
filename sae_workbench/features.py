"""SAE feature activations of the evaluation texts, stored sparse.

On-disk (`<hook>.safetensors`), rows aligned with the activation set's kept tokens:
    row      int32   [nnz]  kept-token row (see activations.py)
    feature  int32   [nnz]  SAE latent index
    value    float32 [nnz]  activation (> 0)
    metadata {"json": JSON of hook, d_sae, n_rows, sae_source, neuronpedia (Neuronpedia id or "")}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from .activations import save_tensors


@dataclass
class FeatureTable:
    row: np.ndarray
    feature: np.ndarray
    value: np.ndarray
    n_rows: int
    d_sae: int
    neuronpedia: str | None = None

    def dense(self) -> np.ndarray:
        """[n_rows, d_sae] float32; only for small SAEs or few rows."""
        out = np.zeros((self.n_rows, self.d_sae), dtype=np.float32)
        out[self.row, self.feature] = self.value
        return out

    def per_text_max(self, text_index: np.ndarray, n_texts: int) -> np.ndarray:
        """[n_texts, d_sae]: each feature's strongest activation in each text."""
        out = np.zeros((n_texts, self.d_sae), dtype=np.float32)
        np.maximum.at(out, (text_index[self.row], self.feature), self.value)
        return out

    def feature_values(self, f: int) -> np.ndarray:
        """Dense [n_rows] activations of one feature."""
        out = np.zeros(self.n_rows, dtype=np.float32)
        m = self.feature == f
        out[self.row[m]] = self.value[m]
        return out


@torch.no_grad()
def encode_sparse(sae, acts: torch.Tensor, batch: int = 4096) -> FeatureTable:
    """Encode raw activations [n, d_in] with any SAE exposing encode(); keep non-zeros."""
    d_in = int(sae.cfg.d_in)
    if acts.shape[1] != d_in:
        raise ValueError(f"SAE expects d_in={d_in} but the activations have width {acts.shape[1]}: wrong SAE for this hook")
    rows, feats, vals = [], [], []
    for b in range(0, acts.shape[0], batch):
        f = sae.encode(acts[b : b + batch].to(sae.W_enc.dtype))
        r, c = torch.nonzero(f > 0, as_tuple=True)
        rows.append((r + b).int())
        feats.append(c.int())
        vals.append(f[r, c].float())
    cat = lambda xs, dt: torch.cat(xs).numpy() if xs else np.zeros(0, dtype=dt)  # noqa: E731
    return FeatureTable(cat(rows, np.int32), cat(feats, np.int32), cat(vals, np.float32), acts.shape[0], int(sae.cfg.d_sae))


def save_features(path: str | Path, table: FeatureTable, hook: str, sae_source: str) -> None:
    save_tensors(
        Path(path),
        {
            "row": torch.from_numpy(table.row),
            "feature": torch.from_numpy(table.feature),
            "value": torch.from_numpy(table.value),
        },
        {
            "hook": hook,
            "d_sae": str(table.d_sae),
            "n_rows": str(table.n_rows),
            "sae_source": sae_source,
            "neuronpedia": table.neuronpedia or "",
        },
    )


def load_features(path: str | Path) -> FeatureTable:
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path} is missing: run the encode stage (dvc repro)")
    try:
        with safe_open(str(path), "np") as f:
            meta = json.loads(f.metadata()["json"])
            t = {k: f.get_tensor(k) for k in ("row", "feature", "value")}
        return FeatureTable(
            t["row"], t["feature"], t["value"], int(meta["n_rows"]), int(meta["d_sae"]), meta.get("neuronpedia") or None
        )
    except (SafetensorError, KeyError, OSError, ValueError, TypeError) as e:
        raise ValueError(f"{path} is corrupt ({type(e).__name__}); delete it and run dvc repro") from None
