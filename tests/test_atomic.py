"""The one atomic-write helper every output goes through: a failure part-way
leaves the previous version and no temporary behind."""

import os

import pytest

from sae_workbench.atomic import atomic_dir, atomic_file, write_text


def test_file_is_replaced_whole_or_not_at_all(tmp_path):
    out = tmp_path / "m.json"
    write_text(out, "old")
    with pytest.raises(RuntimeError):
        with atomic_file(out) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("killed part-way")
    assert out.read_text() == "old" and os.listdir(tmp_path) == ["m.json"]
    write_text(out, "new")
    assert out.read_text() == "new" and os.listdir(tmp_path) == ["m.json"]
    assert out.stat().st_mode & 0o777 == 0o644


def test_file_over_a_read_only_one(tmp_path):
    """DVC's hardlinked outputs are read-only: a re-run replaces them, never writes into them."""
    out = tmp_path / "acts.bin"
    out.write_bytes(b"cached")
    linked = tmp_path / "cache-copy"
    os.link(out, linked)
    out.chmod(0o444)
    with atomic_file(out) as tmp:
        tmp.write_bytes(b"fresh")
    assert out.read_bytes() == b"fresh" and linked.read_bytes() == b"cached"


def test_directory_is_replaced_whole_or_not_at_all(tmp_path):
    d = tmp_path / "sae"
    with atomic_dir(d) as tmp:
        (tmp / "cfg.json").write_text("{}")
    with pytest.raises(RuntimeError):
        with atomic_dir(d) as tmp:
            (tmp / "other.json").write_text("{}")
            raise RuntimeError("killed part-way")
    assert sorted(os.listdir(d)) == ["cfg.json"] and os.listdir(tmp_path) == ["sae"]
    with atomic_dir(d) as tmp:
        (tmp / "weights").write_text("w")
    assert sorted(os.listdir(d)) == ["weights"] and os.listdir(tmp_path) == ["sae"]
