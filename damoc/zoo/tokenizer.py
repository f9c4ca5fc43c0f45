"""The zoo's tokenizer: a byte-level BPE trained locally on world text, saved as a Hugging Face tokenizer.

Base folders get the tokenizer without a chat template (like real Base checkpoints); Chat folders get the same
vocabulary plus a chat template and `<|end|>` as EOS, so `apply_chat_template` works and generation stops at the end
of the assistant turn. Base and Chat share one vocabulary, so their embeddings have the same shape.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

EOS = "<|endoftext|>"
PAD = "<pad>"
END = "<|end|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
SPECIAL_TOKENS = [EOS, PAD, END, *ROLE_TOKENS]

# One turn per role header; the assistant turn ends with <|end|> (the Chat EOS) and a newline.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A PreTrainedTokenizerFast (no chat template) trained on `texts`. Deterministic for the same texts."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
                            show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=EOS, eos_token=EOS, unk_token=EOS,
                                  pad_token=PAD, additional_special_tokens=[END, *ROLE_TOKENS])
    tok.model_max_length = 512
    return tok


def save_base_tokenizer(tok: Any, folder: Path) -> None:
    tok.eos_token = EOS
    tok.chat_template = None
    tok.save_pretrained(str(folder))


def save_chat_tokenizer(tok: Any, folder: Path) -> None:
    tok.eos_token = END
    tok.chat_template = CHAT_TEMPLATE
    try:
        tok.save_pretrained(str(folder))
    finally:            # the object is shared with Base saving: restore its defaults
        tok.eos_token = EOS
        tok.chat_template = None


def chat_prompt(user_text: str) -> str:
    """The chat template rendered for one user turn with the generation prompt (same text as
    `apply_chat_template(..., add_generation_prompt=True, tokenize=False)`), without loading Jinja."""
    return f"<|user|>\n{user_text}{END}\n<|assistant|>\n"
