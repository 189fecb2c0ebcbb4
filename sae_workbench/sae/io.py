"""SAELens interop: export our SAEs through SAELens's own classes and writer,
and load any SAE (ours from disk, or a pre-trained release) as a SAELens SAE.

Export folds the training-time input scale s into the weights, so the saved
SAE takes raw activations: W_enc' = s W_enc, b_dec' = b_dec / s, W_dec' = W_dec / s
(pre-activations, hence TopK choices and JumpReLU thresholds, are unchanged); with
one scale per input dimension (sae.normalize per_dim) the same, dimension by dimension.
Architectures map to SAELens as relu -> standard, topk -> topk,
batchtopk -> jumprelu (one learnt threshold for every latent).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..atomic import atomic_dir
from .base import SparseAutoencoder


def folded_state(sae: SparseAutoencoder, scale: float | torch.Tensor) -> dict[str, torch.Tensor]:
    if isinstance(scale, torch.Tensor):  # one scale per input dimension s_j: W_enc' = diag(s) W_enc, W_dec' = W_dec diag(1/s)
        dec = scale.detach().to(sae.W_enc.device, torch.float32)
        enc = dec[:, None]
    else:
        enc = dec = scale
    return {
        "W_enc": (sae.W_enc.detach() * enc).contiguous(),
        "b_enc": sae.b_enc.detach().clone(),
        "W_dec": (sae.W_dec.detach() / dec).contiguous(),
        "b_dec": (sae.b_dec.detach() / dec).contiguous(),
        **sae.extra_state_for_export(),
    }


def to_saelens(sae: SparseAutoencoder, scale: float | torch.Tensor, hook: str, model_name: str):
    """The equivalent SAELens SAE object (inference class) on raw activations."""
    from sae_lens.saes.sae import SAE, SAEMetadata

    cfg_cls, extra = sae.saelens_config()
    cfg = cfg_cls(
        d_in=sae.d_in, d_sae=sae.d_sae, apply_b_dec_to_input=True,
        metadata=SAEMetadata(hook_name=hook, model_name=model_name, prepend_bos=False), **extra,
    )
    out = SAE.get_sae_class_for_architecture(cfg.architecture())(cfg)
    out.load_state_dict(folded_state(sae, scale))
    return out


def save_for_saelens(sae: SparseAutoencoder, scale: float | torch.Tensor, path: str | Path, hook: str, model_name: str) -> None:
    """cfg.json + sae_weights.safetensors via SAELens's save_model, atomically."""
    lens = to_saelens(sae, scale, hook, model_name)
    with atomic_dir(path) as tmp:
        lens.save_model(tmp)


def load_sae(profile, hook: str, sae_dir: str | Path, device: str = "cpu"):
    """The SAELens SAE for a hook: ours from disk, or the profile's pre-trained release
    (`profile.pretrained_sae(hook)`: release and SAE id; offline: ModelUnavailable, one line).

    Returns (sae, neuronpedia_id or None)."""
    from sae_lens import SAE

    if profile.sae_source == "custom":
        path = Path(sae_dir) / hook
        if not (path / "cfg.json").exists():
            raise ValueError(f"no trained SAE at {path}: run the train_sae stage (dvc repro)")
        try:
            return SAE.load_from_disk(path, device=device), None
        except Exception as e:  # truncated safetensors, broken cfg.json: many exception types
            first = str(e).splitlines()[0] if str(e) else ""
            raise ValueError(f"the SAE at {path} is unreadable ({type(e).__name__}: {first[:160]}); "
                             f"delete {path} and re-run dvc repro (stage train_sae@{hook})") from None
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    from ..offline import ModelUnavailable, hub_error_line, use_hub_or_cache

    release, sae_id = profile.pretrained_sae(hook)
    directory = get_pretrained_saes_directory()
    if release not in directory:
        raise ValueError(f"SAELens knows no release {release!r} (profiles.*.sae_release)")
    lookup = directory[release]
    if sae_id not in lookup.saes_map:
        shown = ", ".join(list(lookup.saes_map)[:8]) + (", ..." if len(lookup.saes_map) > 8 else "")
        raise ValueError(f"release {release!r} has no SAE for {hook!r} (id {sae_id!r}); it has {shown}")
    use_hub_or_cache()
    try:
        sae = SAE.from_pretrained(release, sae_id, device=device)
    except Exception as e:  # offline: hub errors come in many types
        raise ModelUnavailable(hub_error_line(f"SAE release {release!r}", e)) from None
    if sae.cfg.metadata.hook_name != hook:
        raise ValueError(f"SAE {release}/{sae_id} reads {sae.cfg.metadata.hook_name!r}, not {hook!r}")
    return sae, lookup.neuronpedia_id.get(sae_id)
