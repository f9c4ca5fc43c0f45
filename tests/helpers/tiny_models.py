"""Tiny random causal LMs and a tokenizer trained in-test (feasibility.md section 5), for the backend, fine-tune
and evaluation tests. Each build takes well under a second; nothing is downloaded."""
from __future__ import annotations

import random
from pathlib import Path

WORDS = ("red blue green cat dog bird city town river lake north south east west one two three four five six "
         "seven eight nine ten the a of and is what where who lives color pet job answer question paris rome "
         "oslo lima baker miller smith teacher doctor farmer").split()

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def corpus(n: int = 3000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n)]
    lines += [f"Question: {q}\nAnswer: {a}" for q, a in zip(lines[::2], lines[1::2])]
    lines += ["Ünïcödé ✓ café"] * 20
    return lines


def make_tokenizer(out: Path, *, chat: bool = False):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<pad>"] + (["<|user|>", "<|assistant|>", "<|end|>"] if chat else [])
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus(), vocab_size=400, min_frequency=2, special_tokens=specials, show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                  eos_token="<|end|>" if chat else "<|endoftext|>", unk_token="<|endoftext|>",
                                  pad_token="<pad>")
    tok.model_max_length = 256
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(out)
    return tok


def make_model(out: Path, *, arch: str = "llama", hidden: int = 32, layers: int = 2, seed: int = 0,
               chat: bool = False, init_range: float = 0.3) -> Path:
    """Save a random tiny model + tokenizer to `out` and return the folder. A wide init (0.3, not HF's 0.02) makes
    a random model's greedy output vary with the prompt instead of repeating one token."""
    import torch
    from transformers import (AutoModelForCausalLM, Gemma2Config, GPTNeoXConfig, LlamaConfig, MistralConfig,
                              Phi3Config, Qwen2Config, Qwen3Config)

    out = Path(out)
    tok = make_tokenizer(out, chat=chat)
    common = dict(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                  intermediate_size=hidden * 2, max_position_embeddings=256, tie_word_embeddings=True, initializer_range=init_range,
                  pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    if arch == "llama":
        cfg = LlamaConfig(num_key_value_heads=2, head_dim=hidden // 4, **common)
    elif arch == "phi3":
        cfg = Phi3Config(num_key_value_heads=4, **common)
    elif arch == "gpt_neox":
        cfg = GPTNeoXConfig(**common)
    elif arch == "qwen2":
        cfg = Qwen2Config(num_key_value_heads=2, **common)
    elif arch == "qwen3":
        cfg = Qwen3Config(num_key_value_heads=2, head_dim=hidden // 4, **common)
    elif arch == "mistral":
        cfg = MistralConfig(num_key_value_heads=2, head_dim=hidden // 4, sliding_window=None, **common)
    elif arch == "gemma2":      # feasibility.md T8: explicit head_dim, query scale and window
        cfg = Gemma2Config(num_key_value_heads=2, head_dim=hidden // 4, query_pre_attn_scalar=hidden // 4,
                           sliding_window=16, **common)
    else:
        raise ValueError(arch)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(out)
    return out
