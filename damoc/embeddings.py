"""Sentence embeddings with the local encoder, cached on disk by content hash.

`encode(texts)` returns an (n, d) float32 array of L2-normalised vectors: sentence-transformers' pooling (mean pooling
for all-MiniLM-L6-v2 and for a plain Hugging Face encoder folder) followed by L2 normalisation, the recipe
sentence-transformers documents for that model. Vectors are cached under `settings.cache_dir / "embeddings" /
<encoder key>/` in shard files keyed by a hash of each text, so a re-run (another ratio, another method, a resumed
run) never re-encodes a text it has seen with the same encoder.
"""
from __future__ import annotations

import hashlib
import io
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from damoc.encoders import default_encoder_path, encoder_path
from damoc.errors import ConfigError, DamocError
from damoc.events import Reporter, StageTracker
from damoc.fsutil import atomic_write_bytes, stable_hash
from damoc.settings import Settings

__all__ = ["encode", "default_encoder_path", "encoder_key", "EmbeddingCache"]

MAX_SHARDS = 64          # more shard files than this are merged into one on the next write
_MODELS: dict[tuple[str, str], Any] = {}     # (encoder, device) -> SentenceTransformer, loaded once per process


def encoder_key(encoder: str) -> str:
    """Identity of an encoder for the cache: a folder by its config and weight files, a hub id by its name."""
    p = Path(encoder)
    if p.is_dir():
        parts: list[Any] = [str(p.resolve())]
        cfg = p / "config.json"
        parts.append(cfg.read_text(encoding="utf-8") if cfg.is_file() else "")
        parts.append(sorted((f.name, f.stat().st_size) for f in p.iterdir()
                            if f.suffix in (".safetensors", ".bin", ".pt")))
        return stable_hash("encoder", *parts)
    return stable_hash("encoder", encoder)


def _text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


class EmbeddingCache:
    """Append-only shard files of (16-byte text hash, vector). Shards are written atomically with unique names, so
    several processes can share a cache: a reader sees whole shards or none."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _shards(self) -> list[Path]:
        return sorted(self.root.glob("shard-*.npz")) if self.root.is_dir() else []

    def lookup(self, keys: Sequence[bytes]) -> dict[bytes, Any]:
        import numpy as np

        want = set(keys)
        found: dict[bytes, Any] = {}
        for shard in self._shards():
            try:
                with np.load(shard) as z:
                    skeys, vecs = _keys(z["keys"]), z["vecs"]
            except (OSError, ValueError, KeyError):      # a foreign or damaged file: ignore, it will be re-encoded
                continue
            for i, k in enumerate(skeys):
                if k in want and k not in found:
                    found[k] = vecs[i]
            if len(found) == len(want):
                break
        return found

    def add(self, keys: Sequence[bytes], vecs: Any) -> None:
        import numpy as np

        if not len(keys):
            return
        self._write(_key_array(keys), np.asarray(vecs, dtype=np.float32))
        shards = self._shards()
        if len(shards) > MAX_SHARDS:
            self._compact(shards)

    def _write(self, keys: Any, vecs: Any) -> Path:
        import numpy as np

        buf = io.BytesIO()
        np.savez(buf, keys=keys, vecs=vecs)
        path = self.root / f"shard-{secrets.token_hex(8)}.npz"
        atomic_write_bytes(path, buf.getvalue())
        return path

    def _compact(self, shards: list[Path]) -> None:
        import numpy as np

        keys, vecs, seen = [], [], set()
        for shard in shards:
            try:
                with np.load(shard) as z:
                    for k, v in zip(_keys(z["keys"]), z["vecs"]):
                        if k not in seen:
                            seen.add(k)
                            keys.append(k)
                            vecs.append(v)
            except (OSError, ValueError, KeyError):
                continue
        if keys:
            self._write(_key_array(keys), np.stack(vecs))
        for shard in shards:            # only after the merged shard is durable
            shard.unlink(missing_ok=True)


def _key_array(keys: Sequence[bytes]) -> Any:
    # raw bytes as uint8 rows: numpy's "S16" strings would drop a key's trailing NUL bytes
    import numpy as np

    return np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 16)


def _keys(arr: Any) -> list[bytes]:
    raw = arr.tobytes()
    return [raw[i:i + 16] for i in range(0, len(raw), 16)]


def _load_encoder(path: str, device: str) -> Any:
    key = (path, device)
    if key not in _MODELS:
        import logging

        from damoc.models import hf_offline_env
        hf_offline_env()
        # a plain HF encoder folder (no modules.json) makes sentence-transformers log that it adds mean pooling
        logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
        from sentence_transformers import SentenceTransformer
        try:
            _MODELS[key] = SentenceTransformer(path, device=device)
        except OSError as e:
            raise ConfigError(f"cannot load the sentence encoder {path!r}: {e}",
                              "set DAMOC_ENCODER to a local encoder folder, or unset it for the offline MiniLM") \
                from None
    return _MODELS[key]


def encode(texts: Sequence[str], encoder: str | None = None, settings: Settings | None = None, *,
           batch_size: int | None = None, reporter: Reporter | None = None, cache: bool = True,
           device: str | None = None, tracker: StageTracker | None = None) -> Any:
    """Embed `texts`: an (n, d) float32 numpy array, one L2-normalised row per text, in input order.

    `encoder` is a Hugging Face id or folder (default: `settings.encoder`, else the offline all-MiniLM-L6-v2).
    Progress goes to `tracker` (or a new "embed" stage on `reporter`)."""
    import numpy as np

    if settings is None:
        settings = Settings.load()
    texts = [t if isinstance(t, str) else str(t) for t in texts]
    enc = encoder_path(settings, encoder)
    root = Path(settings.cache_dir) / "embeddings" / encoder_key(enc)
    keys = [_text_key(t) for t in texts]
    store = EmbeddingCache(root)
    known = store.lookup(keys) if cache else {}
    missing: dict[bytes, str] = {}
    for k, t in zip(keys, texts):
        if k not in known and k not in missing:
            missing[k] = t
    own = tracker is None
    tr = tracker or StageTracker(reporter, "embed")
    if own:
        tr.start(len(missing))
    if missing:
        from damoc.models import resolve_device, set_threads
        set_threads(settings.threads)
        dev = resolve_device(device or settings.device)
        model = _load_encoder(enc, dev)
        if batch_size is None:
            # CPU: batches of 32 stay in cache and ran 9% faster than 64 (MiniLM, 1,000 notes-qa samples, 2 threads)
            batch_size = 32 if dev == "cpu" else 64
        todo = sorted(missing.items(), key=lambda kv: len(kv[1]))     # similar lengths share a batch: less padding
        chunk = max(batch_size * 8, 256)
        new_keys: list[bytes] = []
        new_vecs: list[Any] = []
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            vecs = model.encode([t for _, t in part], batch_size=batch_size, show_progress_bar=False,
                                convert_to_numpy=True, normalize_embeddings=True)
            vecs = np.asarray(vecs, dtype=np.float32)
            for (k, _), v in zip(part, vecs):
                known[k] = v
            new_keys += [k for k, _ in part]
            new_vecs.append(vecs)
            tr.advance(len(part))
        if cache:
            store.add(new_keys, np.concatenate(new_vecs))
    if own:
        tr.finish("ok", encoded=len(missing), cached=len(texts) - len(missing) if texts else 0, encoder=enc)
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    out = np.stack([known[k] for k in keys]).astype(np.float32, copy=False)
    if not np.all(np.isfinite(out)):
        raise DamocError(f"the encoder {enc} produced non-finite embeddings", "check the encoder folder")
    return out


def describe(encoder: str | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Which encoder would be used, and its cache folder (for `damoc filter --json` summaries)."""
    enc = encoder_path(settings, encoder)
    root = Path(settings.cache_dir) / "embeddings" / encoder_key(enc) if settings is not None else None
    return {"encoder": enc, "cache": str(root) if root else None}
