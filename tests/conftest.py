"""Shared fixtures. Tests never touch the user's data dir (DAMOC_HOME points at a temp dir) and never reach a hub."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.cache import cache_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Every test gets its own DAMOC_HOME."""
    home = tmp_path / "damoc-home"
    monkeypatch.setenv("DAMOC_HOME", str(home))
    monkeypatch.delenv("DAMOC_CONFIG", raising=False)
    # no throughput probe behind a dry run's back (seconds per test); tests/test_preflight_time.py probes on purpose
    monkeypatch.setenv("DAMOC_THROUGHPUT_PROBE", "0")
    return home


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache of this test's own (HF_HUB_CACHE)."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def one_torch_thread():
    """Tiny models on a shared 2-core box: one torch thread is several times faster than two under contention
    (measured: a 24-step fine-tune took 13.3 s with 2 threads at load 8, 1.8 s with 1). Modules opt in with
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def settings(isolated_home):
    from damoc.settings import Settings

    return Settings.load()


@pytest.fixture(scope="session")
def test_zoo():
    """The `--size test` demo zoo, built once and cached between test sessions (see damoc.zoo)."""
    from damoc.zoo import build_zoo

    return build_zoo(size="test", out=cache_dir() / "zoo")


@pytest.fixture(scope="session")
def small_zoo(test_zoo):
    """The test zoo's smallest candidate."""
    return min(test_zoo, key=lambda c: c.parameters)


@pytest.fixture(scope="session")
def test_tasks(test_zoo):
    from damoc.zoo import demo_tasks

    return demo_tasks(size="test", out=cache_dir() / "zoo")


@pytest.fixture(scope="session")
def laws_task(test_tasks):
    """The short-sample laws-qa task (the demo's default task, notes-qa, has ~80-token samples)."""
    return next(t for t in test_tasks if t.name == "laws-qa")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present")
    return SHARED_DATA


def pytest_collection_modifyitems(config, items):
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def zoo_env(settings, test_zoo, laws_task):
    """The test zoo registered in this test's home; three candidates: two with a Base, one without."""
    from damoc.registry import register_zoo

    register_zoo(settings, test_zoo)
    with_base = [c for c in test_zoo if c.base_path]
    deep = max(with_base, key=lambda c: c.layers)          # most layers: the one most likely to be pruned
    shallow = next(c for c in with_base if c.name != deep.name)
    no_base = next(c for c in test_zoo if not c.base_path)
    task = laws_task                                                  # short samples: quick cells
    return {"settings": settings, "task": task, "names": [deep.name, shallow.name, no_base.name], "zoo": test_zoo,
            "deep": deep, "no_base": no_base}
