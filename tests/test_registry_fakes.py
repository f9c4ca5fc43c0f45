"""The fakes of tests.helpers.fakes are what the libraries expect: huggingface_hub reads the fake cache, safetensors
loads the fake weights."""
from __future__ import annotations

import json
from pathlib import Path

# FakeHub and model_files are re-exported for tests/tui, which imports them from here until it imports
# tests.helpers.fakes itself
from tests.helpers.fakes import FakeHub, model_files, write_cached, write_model  # noqa: F401


def test_fake_cache_is_read_by_huggingface_hub(tmp_path):
    from huggingface_hub import scan_cache_dir, try_to_load_from_cache

    snap = write_cached(tmp_path, "acme/tiny-chat", chat=True)
    info = scan_cache_dir(tmp_path)
    assert [r.repo_id for r in info.repos] == ["acme/tiny-chat"]
    rev = next(iter(next(iter(info.repos)).revisions))
    assert Path(rev.snapshot_path) == snap and "main" in rev.refs
    assert try_to_load_from_cache("acme/tiny-chat", "config.json", cache_dir=tmp_path) == str(snap / "config.json")


def test_fake_model_loads_in_safetensors(tmp_path):
    from safetensors.numpy import load_file

    write_model(tmp_path / "m", layers=3, shards=2)
    idx = json.loads((tmp_path / "m" / "model.safetensors.index.json").read_text())
    loaded = {}
    for f in set(idx["weight_map"].values()):
        loaded.update(load_file(str(tmp_path / "m" / f)))
    assert loaded["model.layers.2.mlp.down_proj.weight"].shape == (16, 32)
    assert len(loaded) == 3 + 3 * 9
