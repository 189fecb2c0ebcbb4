"""Every output of the pipeline is written through here, so that a reader, a
killed run or a failed stage sees the old version or the new one, never half
of one.

    with atomic_file("data/x.safetensors") as tmp:   # write tmp, however you like
        save_file(tensors, tmp)
    write_text("metrics/x.json", text)                 # the same, for a string
    with atomic_dir("data/saes/hook") as tmp:          # fill the directory tmp
        sae.save_model(tmp)

The temporary lives beside the target (same filesystem: the final rename is
atomic) under a dot-name, and is removed when the block raises. Every live
temporary is also listed, so a stage stopped by Ctrl-C while Python cannot
raise (inside a long C call: `cli.interruptible`) removes them before it exits
(`remove_live_temporaries`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


_LIVE: set[Path] = set()
"""The temporaries of the atomic blocks now open (files and directories)."""


def remove_live_temporaries() -> None:
    """Remove every live temporary (the targets are untouched)."""
    for tmp in list(_LIVE):
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        _LIVE.discard(tmp)


@contextmanager
def atomic_file(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside `path` (ending in `suffix`: some writers look at it);
    renamed onto `path` when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    _LIVE.add(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        _LIVE.discard(tmp)


def write_bytes(path: str | Path, content: bytes) -> None:
    with atomic_file(path) as tmp:
        tmp.write_bytes(content)


def write_text(path: str | Path, content: str) -> None:
    """A UTF-8 text file."""
    write_bytes(path, content.encode("utf-8"))


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """An empty temporary directory beside `path`; put in place of `path` (whatever
    was there is removed) when the block ends without error."""
    path = Path(path)
    new, old = path.with_name(f".{path.name}.new"), path.with_name(f".{path.name}.old")
    for d in (new, old):
        shutil.rmtree(d, ignore_errors=True)
    new.mkdir(parents=True)
    _LIVE.add(new)
    try:
        yield new
        if path.is_dir() and not path.is_symlink():
            path.rename(old)
        elif path.exists() or path.is_symlink():
            path.unlink()
        new.rename(path)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    finally:
        _LIVE.discard(new)
    shutil.rmtree(old, ignore_errors=True)
