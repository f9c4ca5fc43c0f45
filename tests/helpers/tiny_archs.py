"""Tiny random causal LMs of every architecture the pruning code supports, built in-process (no download).

The demo zoo covers a subset of these architectures with trained Chat/Base pairs; these random ones keep every
supported architecture under test (feasibility.md section 5 lists the config quirks reproduced below).
"""
from __future__ import annotations

import functools
from pathlib import Path

ARCHS = ["llama", "mistral", "ministral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "gpt_neox",
         "olmo", "olmo2", "olmo3", "glm", "glm4", "granite", "starcoder2", "cohere", "cohere2", "smollm3", "helium",
         "stablelm"]
CORPUS = ("the quick brown fox jumps over the lazy dog. a tiny model learns to count: one two three four five. "
          "question: where does ana live? answer: in the town of bree. ") * 8


@functools.lru_cache(maxsize=1)
def _tokenizer_json(tmp_root: str) -> str:
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([CORPUS], vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>", "<pad>"])
    Path(tmp_root).mkdir(parents=True, exist_ok=True)
    path = Path(tmp_root) / "tokenizer.json"
    bpe.save(str(path))
    return str(path)


def tiny_tokenizer(tmp_root: Path):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_file(_tokenizer_json(str(tmp_root))),
                                  bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                  unk_token="<|endoftext|>", pad_token="<pad>")
    tok.model_max_length = 128
    return tok


def tiny_config(model_type: str, layers: int = 6):
    from transformers import AutoConfig

    kw = dict(vocab_size=320, hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
              num_key_value_heads=2, head_dim=8, max_position_embeddings=128, tie_word_embeddings=True,
              pad_token_id=1, bos_token_id=0, eos_token_id=0)
    if model_type in ("gemma2", "gemma3_text"):
        kw.update(query_pre_attn_scalar=8, sliding_window=6)
    if model_type in ("mistral", "ministral", "olmo3", "cohere2"):
        kw.update(sliding_window=6)
    if model_type in ("qwen2", "qwen3"):
        kw.update(use_sliding_window=True, sliding_window=6, max_window_layers=2)
    if model_type == "gpt_neox":
        kw.pop("num_key_value_heads"), kw.pop("head_dim")
    if model_type == "smollm3":
        kw.update(no_rope_layer_interval=2)
    if model_type == "starcoder2":
        kw.pop("head_dim")
    return AutoConfig.for_model(model_type, **kw)


def tiny_model(model_type: str, layers: int = 6, seed: int = 0):
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(model_type, layers))
    # random init gives near-identity layers at this size; bigger weights make every layer matter
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
    return model.eval()


def save_pair(tmp_path: Path, model_type: str, layers: int = 6, *, delta: float = 0.05, with_base: bool = True):
    """A Chat folder (= Base + a random task vector) and optionally its Base folder, with a tokenizer each."""
    import torch

    base = tiny_model(model_type, layers)
    tok = tiny_tokenizer(tmp_path)
    chat_dir, base_dir = tmp_path / f"{model_type}-chat", tmp_path / f"{model_type}-base"
    if with_base:
        base.save_pretrained(base_dir)
        tok.save_pretrained(base_dir)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in base.parameters():
            p.add_(torch.randn(p.shape, generator=g) * delta)
    base.save_pretrained(chat_dir)
    tok.save_pretrained(chat_dir)
    return chat_dir, (base_dir if with_base else None)
