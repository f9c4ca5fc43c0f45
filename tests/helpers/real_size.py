"""Synthetic real-size Chat/Base pairs: published architectures at their real sizes, random weights (a bench and
test helper, not a product feature; nothing is downloaded).

`build_pair(out, "qwen2.5-0.5b")` writes `out/chat` and `out/base`: config.json, bf16 safetensors shards
(`model-0000i-of-0000N.safetensors` + the index), and an offline byte-level BPE tokenizer (the Chat's with a chat
template). Weights are generated tensor by tensor straight into the shards (the model is never built in memory).

Base = Chat - tau, with tau a structured task vector: per layer and per 2-D weight a rank-4 product u·vᵀ whose norm is
`task_scale` x the weight's norm, growing with depth (fine-tuning moves later layers more), so the sparse merge has
a real, layer-dependent task vector to carry. Norm weights, embeddings and the final norm are shared.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

# Published shapes (config.json of each model on the Hugging Face hub).
SHAPES: dict[str, dict[str, Any]] = {
    "qwen2.5-0.5b": dict(model_type="qwen2", hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, intermediate_size=4864, vocab_size=151936,
                         tie_word_embeddings=True, rope_theta=1000000.0, max_position_embeddings=32768,
                         rms_norm_eps=1e-6),
    "qwen2.5-1.5b": dict(model_type="qwen2", hidden_size=1536, num_hidden_layers=28, num_attention_heads=12,
                         num_key_value_heads=2, intermediate_size=8960, vocab_size=151936,
                         tie_word_embeddings=True, rope_theta=1000000.0, max_position_embeddings=32768,
                         rms_norm_eps=1e-6),
    "llama-3.2-1b": dict(model_type="llama", hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
                         num_key_value_heads=8, intermediate_size=8192, vocab_size=128256,
                         tie_word_embeddings=True, rope_theta=500000.0, max_position_embeddings=131072,
                         rms_norm_eps=1e-5, head_dim=64),
}

WORDS = ("the a of and is what where who when which how many lives works color pet job city river north south "
         "east west red blue green black white one two three four five six seven eight nine ten doctor farmer "
         "teacher baker paris rome oslo lima tokyo cairo answer question report note law article section "
         "patient study result method data model train test value").split()
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
SPECIALS = ["<|endoftext|>", "<pad>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]


@dataclass(frozen=True)
class PairSpec:
    name: str
    shape: dict[str, Any]
    seed: int = 0
    task_scale: float = 0.05          # ||tau|| / ||W|| at the last layer (linear in depth from half of it)
    task_rank: int = 4
    max_shard_bytes: int = 1 << 30
    tokenizer_vocab: int = 2000

    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return f"{self.name}-{hashlib.sha1(blob).hexdigest()[:10]}"


def spec(name: str, **overrides: Any) -> PairSpec:
    """A published shape by name; `overrides` change shape fields (e.g. num_hidden_layers=2 for a small test)."""
    shape_keys = set(SHAPES[name]) | {"head_dim"}
    shape = {**SHAPES[name], **{k: v for k, v in overrides.items() if k in shape_keys}}
    rest = {k: v for k, v in overrides.items() if k not in shape_keys}
    return replace(PairSpec(name, shape), **rest)


def small_spec(name: str = "qwen2.5-0.5b", **overrides: Any) -> PairSpec:
    """The same architecture at a size a test builds in a second (layer count, widths and vocabulary cut)."""
    base = SHAPES[name]
    heads, kv = 4, 2 if base["num_key_value_heads"] < base["num_attention_heads"] else 4
    small = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=heads, num_key_value_heads=kv,
                 intermediate_size=128, vocab_size=4096, max_position_embeddings=1024)
    if "head_dim" in base:
        small["head_dim"] = 16
    return spec(name, **{**small, **overrides})


def corpus(n: int = 2500, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) for _ in range(n)]
    return lines + [f"Question: {q}\nAnswer: {a}" for q, a in zip(lines[::2], lines[1::2])]


def save_tokenizer(folder: Path, *, chat: bool, vocab: int = 2000) -> Any:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus(), vocab_size=vocab, min_frequency=2, special_tokens=SPECIALS,
                            show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                  eos_token="<|end|>" if chat else "<|endoftext|>", unk_token="<|endoftext|>",
                                  pad_token="<pad>", additional_special_tokens=["<|end|>", "<|system|>", "<|user|>",
                                                                                "<|assistant|>"])
    tok.model_max_length = 4096
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(str(folder))
    return tok


def _config(s: PairSpec, tok: Any) -> Any:
    from transformers import AutoConfig

    shape = dict(s.shape)
    model_type = shape.pop("model_type")
    return AutoConfig.for_model(model_type, **shape, torch_dtype="bfloat16", pad_token_id=tok.pad_token_id,
                                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)


def _names_and_shapes(cfg: Any) -> list[tuple[str, tuple[int, ...]]]:
    """The checkpoint's tensor names and shapes, from the model class on the meta device (no memory)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    out = []
    for name, p in model.state_dict().items():
        if tied and name == "lm_head.weight":
            continue
        out.append((name, tuple(p.shape)))
    return out


def _gen(name: str, seed: int) -> Any:
    import torch

    g = torch.Generator().manual_seed(int(hashlib.sha1(f"{seed}:{name}".encode()).hexdigest()[:12], 16))
    return g


def _layer_of(name: str) -> int | None:
    parts = name.split(".")
    if "layers" in parts:
        i = parts.index("layers")
        if i + 1 < len(parts) and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return None


def build_pair(out: str | Path, s: PairSpec | str, *, force: bool = False) -> tuple[Path, Path]:
    """Write the Chat and Base folders of `s` under `out` (skipped when a finished build with the same spec is
    there). Returns (chat, base)."""
    import torch

    from damoc.fsutil import atomic_write_json
    from damoc.prune.checkpoint import ShardWriter

    s = spec(s) if isinstance(s, str) else s
    out = Path(out)
    chat_dir, base_dir = out / "chat", out / "base"
    marker = out / "built.json"
    if not force and marker.is_file() and json.loads(marker.read_text()).get("key") == s.key():
        return chat_dir, base_dir
    for d in (chat_dir, base_dir):
        d.mkdir(parents=True, exist_ok=True)
    tok = save_tokenizer(chat_dir, chat=True, vocab=s.tokenizer_vocab)
    save_tokenizer(base_dir, chat=False, vocab=s.tokenizer_vocab)
    cfg = _config(s, tok)
    n_layers = int(cfg.num_hidden_layers)
    writers = {d: ShardWriter(d, max_shard_bytes=s.max_shard_bytes) for d in (chat_dir, base_dir)}
    params = 0
    for name, shape in _names_and_shapes(cfg):
        g = _gen(name, s.seed)
        numel = 1
        for n in shape:
            numel *= n
        params += numel
        if name.endswith("norm.weight") or "layernorm" in name:
            w = torch.ones(shape)
        elif name.endswith(".bias"):
            w = torch.randn(shape, generator=g) * 0.02
        else:
            w = torch.randn(shape, generator=g) * 0.02
        layer = _layer_of(name)
        chat = w.to(torch.bfloat16)
        base = chat
        if layer is not None and w.dim() == 2:
            r = s.task_rank
            u = torch.randn(shape[0], r, generator=g)
            v = torch.randn(r, shape[1], generator=g)
            tau = u @ v
            depth = 0.5 + 0.5 * layer / max(1, n_layers - 1)
            tau *= s.task_scale * depth * float(w.norm()) / float(tau.norm())
            base = (w - tau).to(torch.bfloat16)
            del u, v, tau
        writers[chat_dir].add(name, chat)
        writers[base_dir].add(name, base)
        del w
    for d, wr in writers.items():
        wr.close()
        c = cfg.to_dict()
        c["architectures"] = [type(cfg).__name__.replace("Config", "ForCausalLM")]
        atomic_write_json(d / "config.json", c)
    atomic_write_json(marker, {"key": s.key(), "spec": asdict(s), "parameters": params})
    return chat_dir, base_dir


def parameters(out: str | Path) -> int:
    return int(json.loads((Path(out) / "built.json").read_text())["parameters"])


def samples(n: int, *, prompt_words: int = 120, answer_words: int = 20, seed: int = 0) -> list[Any]:
    """QA samples with long prompts and short answers (the shape of the demo's tasks), deterministic."""
    from damoc.data.sample import Sample

    rng = random.Random(seed)
    out = []
    for i in range(n):
        ctx = " ".join(rng.choice(WORDS) for _ in range(prompt_words))
        ans = " ".join(rng.choice(WORDS) for _ in range(answer_words))
        out.append(Sample(id=f"s{i}", question=f"what is item {i}?", context=ctx, answer=ans))
    return out
