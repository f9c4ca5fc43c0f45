"""Facts and capabilities computed from a model folder: config.json and safetensors headers only.

No weights are loaded and nothing is downloaded. A safetensors file starts with an 8-byte little-endian header
length and a JSON header mapping tensor names to dtype, shape and offsets (the format spec in
huggingface/safetensors README), so names and shapes of a 9B checkpoint are read in milliseconds.

Sparse merging (DaMoC Eq. 4) combines the Chat weights of a pruned layer with `Chat - Base` of that layer, so it
needs a Base whose decoder-layer tensors have the same names and shapes as the Chat's. Embeddings and the LM head are
not merged, so a difference there (e.g. a chat model with added tokens) is a note, not a blocker.
"""
from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from damoc.errors import DamocError
from damoc.registry.models import DTYPE_BYTES, Capability, ModelFacts

MAX_HEADER = 100 * 1024 * 1024          # the safetensors spec caps the header at 100 MB
LAYER_RE = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer|encoder\.layers)\.(\d+)\.")
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


class UnreadableModel(DamocError):
    """A model folder whose config.json or weights cannot be read."""


@dataclass
class WeightIndex:
    """Tensor names -> (dtype, shape) of one checkpoint, from headers only."""

    format: str                                   # "safetensors" | "bin" | "none"
    files: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)   # shards named by the index but absent (partial download)
    tensors: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)

    @property
    def parameters(self) -> int:
        n = 0
        for _, shape in self.tensors.values():
            k = 1
            for d in shape:
                k *= d
            n += k
        return n

    @property
    def nbytes(self) -> int:
        return sum(f.stat().st_size for f in self.files if f.exists())


def read_config(folder: Path) -> dict[str, Any]:
    cfg = Path(folder) / "config.json"
    if not cfg.is_file():
        raise UnreadableModel(f"{folder}: no config.json (not a Hugging Face model folder)",
                              "point at the folder that holds config.json and the *.safetensors files")
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, RecursionError) as e:
        raise UnreadableModel(f"{cfg}: not valid JSON ({e})", "re-download the model or fix config.json") from e
    if not isinstance(data, dict):
        raise UnreadableModel(f"{cfg}: expected a JSON object", "re-download the model or fix config.json")
    return data


def read_safetensors_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor name -> (dtype, shape) from the header of one safetensors file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise ValueError("file shorter than the 8-byte header length")
            (n,) = struct.unpack("<Q", raw)
            if n <= 0 or n > MAX_HEADER or n > size - 8:
                raise ValueError(f"header length {n} does not fit a {size}-byte file")
            header = json.loads(f.read(n))
    except (OSError, ValueError, UnicodeDecodeError) as e:   # JSONDecodeError is a ValueError
        raise UnreadableModel(f"{path}: unreadable safetensors ({e})",
                              "the file is truncated or not safetensors: re-download it "
                              "(`damoc registry pull NAME` resumes) or replace the folder") from e
    if not isinstance(header, dict):
        raise UnreadableModel(f"{path}: unreadable safetensors (header is not a JSON object)",
                              "re-download the file")
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            out[name] = (str(info["dtype"]), tuple(int(d) for d in info["shape"]))
        except (KeyError, TypeError, ValueError) as e:
            raise UnreadableModel(f"{path}: unreadable safetensors (bad entry for tensor {name!r})",
                                  "re-download the file") from e
    return out


def weight_index(folder: Path) -> WeightIndex:
    """The checkpoint of a folder: sharded safetensors (index), single safetensors, or torch .bin (names unknown)."""
    folder = Path(folder)
    idx = folder / "model.safetensors.index.json"
    if idx.is_file():
        try:
            weight_map = json.loads(idx.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError, OSError) as e:
            raise UnreadableModel(f"{idx}: not a valid safetensors index ({e})", "re-download the model") from e
        shards = sorted(set(weight_map.values()))
        wi = WeightIndex("safetensors")
        for s in shards:
            p = folder / s
            if p.exists():
                wi.files.append(p)
            else:
                wi.missing.append(s)
        if not wi.missing:
            for p in wi.files:
                wi.tensors.update(read_safetensors_header(p))
        return wi
    # Mistral repos ship both HF shards and a `consolidated.safetensors` in their own format: never count both.
    files = sorted(p for p in folder.glob("*.safetensors") if not p.name.startswith("consolidated"))
    if files:
        wi = WeightIndex("safetensors", files=files)
        for p in files:
            wi.tensors.update(read_safetensors_header(p))
        return wi
    bins = sorted(folder.glob("pytorch_model*.bin"))
    if bins:
        return WeightIndex("bin", files=bins)
    return WeightIndex("none")


def folder_size(folder: Path) -> int:
    """Bytes on disk, following the HF cache's symlinks into blobs/ (each blob counted once)."""
    seen: set[str] = set()
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            p = Path(root) / name
            try:
                real = os.path.realpath(p)
                if real in seen:
                    continue
                seen.add(real)
                total += os.path.getsize(real)
            except OSError:
                continue
    return total


def _first(cfg: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        v = cfg.get(k)
        if v is not None:
            return v
    text = cfg.get("text_config")             # multimodal wrappers keep the LM config inside
    if isinstance(text, dict):
        return _first(text, *keys)
    return None


def _license(folder: Path) -> str | None:
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    try:
        head = readme.read_text(encoding="utf-8", errors="replace")[:4000]
    except OSError:
        return None
    if not head.startswith("---"):
        return None
    for line in head.splitlines()[1:]:
        if line.strip() == "---":
            break
        m = re.match(r"^license:\s*(.+?)\s*$", line)
        if m:
            return m.group(1).strip("'\"")
    return None


def _has_chat_template(folder: Path) -> bool:
    if any((folder / f).is_file() for f in CHAT_TEMPLATE_FILES):
        return True
    tc = folder / "tokenizer_config.json"
    if tc.is_file():
        try:
            return bool(json.loads(tc.read_text(encoding="utf-8")).get("chat_template"))
        except (json.JSONDecodeError, OSError, UnicodeDecodeError, AttributeError):
            return False
    return False


def facts_from_folder(folder: Path, index: WeightIndex | None = None) -> ModelFacts:
    """Facts of a local model folder (raises UnreadableModel for a missing/broken config.json)."""
    folder = Path(folder)
    cfg = read_config(folder)
    if index is None:
        index = weight_index(folder)
    facts = config_facts(cfg, index)
    facts.license = _license(folder)
    facts.chat_template = _has_chat_template(folder)
    facts.size_bytes = folder_size(folder)
    facts.origin = "files"
    return facts


def config_facts(cfg: dict[str, Any], index: WeightIndex) -> ModelFacts:
    """The facts config.json and the safetensors headers give (architecture, sizes, parameters, dtype), wherever
    they were read: a folder (`facts_from_folder`) or the hub (`hub.hub_capability`)."""
    dtype = _first(cfg, "torch_dtype", "dtype")
    if index.tensors:
        counts: dict[str, int] = {}
        for dt, _ in index.tensors.values():
            counts[dt] = counts.get(dt, 0) + 1
        dtype = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}.get(max(counts, key=counts.get), dtype)
    hidden = _first(cfg, "hidden_size", "n_embd", "d_model")
    heads = _first(cfg, "num_attention_heads", "n_head", "num_heads")
    return ModelFacts(
        architecture=_first(cfg, "model_type"),
        architectures=list(cfg.get("architectures") or []),
        parameters=index.parameters or None,
        layers=_first(cfg, "num_hidden_layers", "n_layer", "num_layers", "n_layers"),
        hidden_size=hidden,
        intermediate_size=_first(cfg, "intermediate_size", "ffn_hidden_size", "n_inner"),
        attention_heads=heads,
        kv_heads=_first(cfg, "num_key_value_heads", "multi_query_group_num", "num_kv_heads") or heads,
        vocab_size=_first(cfg, "vocab_size", "padded_vocab_size"),
        dtype=str(dtype) if dtype else None,
        needs_remote_code=bool(cfg.get("auto_map")),
    )


def _natural(name: str) -> tuple[Any, ...]:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def _shape(s: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in s) + "]"


def compare_checkpoints(chat_dir: Path, base_dir: Path) -> Capability:
    """Is this Base a usable W_pre for this Chat? Same architecture, same layer count, same decoder-layer tensor
    names and shapes. Returns a Capability with state supported / base_incompatible / unreadable."""
    chat_dir, base_dir = Path(chat_dir), Path(base_dir)
    try:
        ccfg, bcfg = read_config(chat_dir), read_config(base_dir)
        ci, bi = weight_index(chat_dir), weight_index(base_dir)
    except UnreadableModel as e:
        return Capability("unreadable", False, f"pruning skipped: {e.message}", detail={"error": e.message})
    return compare_headers(ccfg, bcfg, ci, bi)


def compare_headers(ccfg: dict[str, Any], bcfg: dict[str, Any], ci: WeightIndex, bi: WeightIndex) -> Capability:
    """The sparse-merge rule on what a pair's files say (config.json and the safetensors headers), wherever they
    were read: from local folders (`compare_checkpoints`) or from the hub by range requests (`hub.hub_capability`)."""
    cap = lambda why, **d: Capability("base_incompatible", False, f"pruning skipped: Base incompatible ({why})",
                                      detail=d)
    ca, ba = ccfg.get("model_type"), bcfg.get("model_type")
    if ca != ba:
        return cap(f"Chat is {ca}, Base is {ba}: different families", chat_architecture=ca, base_architecture=ba)
    cl = _first(ccfg, "num_hidden_layers", "n_layer", "num_layers")
    bl = _first(bcfg, "num_hidden_layers", "n_layer", "num_layers")
    if cl != bl:
        return cap(f"Chat has {cl} layers, Base has {bl}", chat_layers=cl, base_layers=bl)
    for which, wi in (("Chat", ci), ("Base", bi)):
        if wi.missing:
            return Capability("unreadable", False,
                              f"pruning skipped: {which} weights incomplete ({len(wi.missing)} shard(s) missing, "
                              f"e.g. {wi.missing[0]})", detail={"missing": wi.missing})
        if wi.format == "none":
            return Capability("unreadable", False, f"pruning skipped: {which} folder has no weights "
                              "(*.safetensors or pytorch_model*.bin)", detail={})
    notes: list[str] = []
    if ci.format != "safetensors" or bi.format != "safetensors":
        # .bin checkpoints have no readable header without loading them: compare the shape-defining config keys
        keys = ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim")
        for k in keys:
            if ccfg.get(k) != bcfg.get(k):
                return cap(f"config {k}: Chat {ccfg.get(k)} vs Base {bcfg.get(k)}", key=k)
        notes.append("tensor shapes not checked: .bin weights have no header to read (configs match)")
        return Capability("supported", True, "", detail={}, notes=notes)
    clayer = {k: v for k, v in ci.tensors.items() if LAYER_RE.search(k)}
    blayer = {k: v for k, v in bi.tensors.items() if LAYER_RE.search(k)}
    if not clayer:
        return Capability("unreadable", False, "pruning skipped: no decoder-layer tensors found in the Chat "
                          "checkpoint (unknown layout)", detail={})
    missing = sorted(set(clayer) - set(blayer), key=_natural)
    if missing:
        return cap(f"tensor {missing[0]} missing from Base" + (f" (+{len(missing) - 1} more)" if len(missing) > 1
                                                                else ""), tensor=missing[0], missing=len(missing))
    extra = sorted(set(blayer) - set(clayer), key=_natural)
    if extra:
        return cap(f"Base has tensor {extra[0]} that Chat lacks", tensor=extra[0])
    for k in sorted(clayer, key=_natural):
        if clayer[k][1] != blayer[k][1]:
            return cap(f"{k}: Chat {_shape(clayer[k][1])} vs Base {_shape(blayer[k][1])}", tensor=k,
                       chat_shape=list(clayer[k][1]), base_shape=list(blayer[k][1]))
    for k in sorted(set(ci.tensors) & set(bi.tensors), key=_natural):
        if k not in clayer and ci.tensors[k][1] != bi.tensors[k][1]:
            notes.append(f"{k} differs (Chat {_shape(ci.tensors[k][1])}, Base {_shape(bi.tensors[k][1])}); "
                         "not used by sparse merging")
    cdt = {v[0] for v in clayer.values()}
    bdt = {v[0] for v in blayer.values()}
    if cdt != bdt:
        notes.append(f"dtypes differ (Chat {'/'.join(sorted(cdt))}, Base {'/'.join(sorted(bdt))}); merged in float32")
    return Capability("supported", True, "", detail={"layer_tensors": len(clayer)}, notes=notes)


def size_from_parameters(parameters: int | None, dtype: str | None) -> int | None:
    if not parameters:
        return None
    return int(parameters * DTYPE_BYTES.get(dtype or "bfloat16", 2))
