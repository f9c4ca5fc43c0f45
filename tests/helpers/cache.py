"""The cache shared between test sessions (the test zoo, the filters' embedding cache)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$DAMOC_TEST_CACHE or ~/.cache/damoc-tests, created on first use."""
    root = os.environ.get("DAMOC_TEST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "damoc-tests")
    p = Path(root)
    p.mkdir(parents=True, exist_ok=True)
    return p
