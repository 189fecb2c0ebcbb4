"""Everything a later stage would refuse, checked before any stage runs.

    from sae_workbench.validate import check_pipeline
    notes = check_pipeline(params, texts, "data/texts/labelled.jsonl")   # ValueError: one line

`load_params` checks what params.yaml says on its own (types, bounds, names);
this checks what it asks of the machine and the data, cheaply, without loading
a model: the names the registries hold (model kinds, SAE architectures), the
sizes of the offline corpus sources, each profile's n_layers and the SAE width
against the model's config file, whether TransformerLens knows the architecture,
the hub for a profile that needs it (offline: its files in the local cache),
the memory SAE training would hold, the device, and the labelled texts (their
checks are in `data.validate_labelled`) with the text ids params.yaml names.
What it cannot know without loading the model (d_model of a model in no config
file or table) it returns as notes, which stages/check.py prints.
`stages/check.py` runs it first under `dvc repro`, so nothing it would refuse
reaches a stage whose outputs DVC has deleted.
"""

from __future__ import annotations

import os
from dataclasses import replace

from .config import Params, ProfileConfig, matched_hook
from .data import Text, check_corpus_counts, validate_labelled
from .kinds import model_kind
from .models import ModelDims, model_dims, transformer_lens_knows
from .offline import ModelUnavailable, hub_reachable, in_hub_cache
from .sae.train import architecture_builder, resolve_device


def check_profile(key: str, profile: ProfileConfig, chosen: bool) -> ModelDims | None:
    """The profile's kind is registered and its n_layers is the model's; returns the model's
    dims (None if unknown without loading it). A profile neither chosen nor studied by the
    cross_model stage (`chosen` False) may name a package not installed here (it is only
    checked once `model` or cross_model.profiles selects it)."""
    try:
        model_kind(profile)
    except ValueError as e:
        raise ValueError(f"{str(e).replace('profiles.*.', f'profiles.{key}.')} (params.yaml)") from None
    try:
        dims = model_dims(profile)
    except ModelUnavailable as e:
        if not chosen:
            return None
        raise ValueError(f"profiles.{key}.name: {e} (params.yaml)") from None
    arch = {"gguf": "tl_name", "hooked_transformer": "name"}.get(profile.loader)
    if chosen and arch and not transformer_lens_knows(getattr(profile, arch)):
        raise ValueError(f"profiles.{key}.{arch} {getattr(profile, arch)!r} is not a model TransformerLens knows "
                         "(loading_from_pretrained.OFFICIAL_MODEL_NAMES), so no stage could build it (params.yaml)")
    if dims is not None and dims.n_layers != profile.n_layers:
        raise ValueError(f"profiles.{key}.n_layers must be {dims.n_layers}, the layers of {profile.name} "
                         f"(from {dims.source}), got {profile.n_layers} (params.yaml)")
    return dims


def check_hub(key: str, profile: ProfileConfig, hooks: list[str]) -> None:
    """What the chosen profile fetches from the Hugging Face hub (a hooked_transformer model,
    pre-trained SAEs) exists, and is reachable or in the local cache; imports TransformerLens
    or SAELens only for such a profile."""
    repos = []
    if profile.sae_source == "pretrained":
        from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

        directory = get_pretrained_saes_directory()
        for hook in hooks:
            try:
                release, sae_id = profile.pretrained_sae(hook)
            except ValueError as e:
                raise ValueError(f"profiles.{key}.sae_release: {e} (params.yaml)") from None
            if release not in directory:
                raise ValueError(f"profiles.{key}.sae_release: SAELens knows no release {release!r} (params.yaml)")
            if sae_id not in directory[release].saes_map:
                raise ValueError(f"profiles.{key}.sae_id: release {release!r} has no SAE {sae_id!r} for {hook!r} (params.yaml)")
            repos.append((f"profiles.{key}.sae_release", f"SAE release {release!r}", directory[release].repo_id))
    if profile.loader == "hooked_transformer":
        from transformer_lens.loading_from_pretrained import get_official_model_name

        repos.append((f"profiles.{key}.name", f"model {profile.name!r}", get_official_model_name(profile.name)))
    if repos and not hub_reachable():
        for k, what, repo in repos:
            if not in_hub_cache(repo):
                raise ValueError(f"{k}: {what} needs the Hugging Face hub (huggingface.co), which is unreachable here, and "
                                 f"{repo} is not in the local cache; run with internet access once, or use an offline profile: "
                                 "model: gemma or model: minilm (params.yaml)")


def sae_training_bytes(params: Params, d_model: int) -> dict[str, int]:
    """Rough bytes SAE training holds, by the key that sizes each part."""
    d_sae = params.sae.expansion * d_model
    return {
        "sae.buffer_tokens": params.sae.buffer_tokens * d_model * 4,  # the shuffle buffer, float32
        "sae.batch_tokens": params.sae.batch_tokens * d_sae * 4 * 4,  # a batch's pre-activations, latents, their gradients
        "sae.expansion": d_model * d_sae * 4 * 2 * 4,  # encoder and decoder, their gradients and Adam's two moments
    }


def memory_bytes() -> int | None:
    """This machine's physical memory, if the OS says."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_pipeline(params: Params, texts: list[Text], texts_path: str = "the labelled texts") -> list[str]:
    """Raise ValueError (one line naming the key or text) on anything a later stage would refuse;
    returns notes on what could not be checked without loading the model."""
    notes, chosen, others = [], None, {}
    cross = params.cross_model
    studied = set(cross.profiles) if cross.hook and params.model.sae_source == "custom" else set()
    for key, profile in (params.profiles or {params.model_key: params.model}).items():
        dims = check_profile(key, profile, key == params.model_key or key in studied)
        if key == params.model_key:
            chosen = dims
        elif key in studied:
            others[key] = dims
    check_hub(params.model_key, params.model, params.hooks)
    architecture_builder(params.sae.architecture)
    if chosen is None:
        notes.append(f"d_model of {params.model.name} is unknown until the model loads: sae.k is checked against "
                     "the SAE width by train_sae")
    else:
        width = params.sae.expansion * chosen.d_model
        if params.sae.k > width:
            raise ValueError(f"sae.k must be an integer in [1, {width}] (the SAE's width: sae.expansion "
                             f"{params.sae.expansion} x d_model {chosen.d_model} of {params.model.name}), "
                             f"got {params.sae.k} (params.yaml)")
        need, have = sae_training_bytes(params, chosen.d_model), memory_bytes()
        if have and sum(need.values()) > have / 2:
            key = max(need, key=need.get)
            parts = ", ".join(f"{k} {v / 1e9:.1f}" for k, v in need.items())
            raise ValueError(f"{key} is too large for this machine: SAE training would hold about {sum(need.values()) / 1e9:.0f} GB "
                             f"({parts} GB), more than half its {have / 1e9:.0f} GB of memory (params.yaml)")
    for key, dims in others.items():  # the cross_model stage loads these and trains its own SAEs on them
        profile = replace(params.profiles[key], sae_source="custom")
        check_hub(key, profile, [matched_hook(cross.hook, params.model.n_layers, profile.n_layers)])
        if dims is not None and params.sae.k > params.sae.expansion * dims.d_model:
            raise ValueError(f"sae.k must be an integer in [1, {params.sae.expansion * dims.d_model}] for cross_model.profiles' {key} "
                             f"(sae.expansion {params.sae.expansion} x d_model {dims.d_model} of {profile.name}), got {params.sae.k}: lower sae.k "
                             f"or leave {key} out of cross_model.profiles (params.yaml)")
    resolve_device(params.sae.device)
    check_corpus_counts(params.data)
    validate_labelled(texts)
    attribution = params.steer.attribution_text
    if attribution and not any(t.id == attribution for t in texts):
        raise ValueError(f"steer.attribution_text {attribution!r} is not a text id in {texts_path} "
                         "('' takes the first held-out text of steer.category) (params.yaml)")
    return notes
