"""Working offline: the machine-wide cache, and the Hugging Face hub when it
cannot be reached (fail at once, in one line, instead of after minutes of
retries). Imports nothing of the project: models, SAEs and fonts all use it.

    cache_root()                 # $SAE_WORKBENCH_CACHE, or ~/.cache/sae_workbench
    use_hub_or_cache()           # offline mode for the hub client if the hub is unreachable
    hub_reachable(), in_hub_cache("gpt2")   # what the check stage asks before a stage needs the hub
    raise ModelUnavailable(hub_error_line("model 'gpt2-small'", err))
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

CACHE_ENV = "SAE_WORKBENCH_CACHE"


class ModelUnavailable(RuntimeError):
    """The model (or its SAEs) cannot be loaded here; the message says why in one line."""


def cache_root() -> Path:
    """$SAE_WORKBENCH_CACHE, or ~/.cache/sae_workbench."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sae_workbench"


def set_hub_offline() -> None:
    """Make the Hugging Face hub client offline, also when it was imported already."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = True


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """Whether a connection to the hub opens within `timeout` seconds."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def in_hub_cache(repo_id: str) -> bool:
    """Whether the Hugging Face cache holds a snapshot of model repository `repo_id`."""
    from huggingface_hub.constants import HF_HUB_CACHE

    snapshots = Path(HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())


def use_hub_or_cache(host: str = "huggingface.co", timeout: float = 3.0) -> None:
    """Fail fast offline: if the hub cannot be reached, put the hub client in
    offline mode, so files already in the local cache still load and missing
    ones fail at once instead of after minutes of retries."""
    if not hub_reachable(host, timeout):
        set_hub_offline()


def hub_error_line(what: str, err: BaseException) -> str:
    return (
        f"{what} needs the Hugging Face hub (huggingface.co), which is unreachable here and the files are "
        f"not in the local cache ({type(err).__name__}); run it with internet access, or use an offline profile: model: gemma or model: minilm"
    )
