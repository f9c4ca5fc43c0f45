"""Candidate specs and the zoo recipe per size.

A recipe is plain data (frozen dataclasses); its hash names the cache folder, so any change to a spec, a corpus size
or a training budget builds a new pool instead of reusing a stale one.

The candidates differ on purpose, as real model families do (zoo spike, ../shared/design/zoo-spike.md):
* the share of question/answer text in pretraining and of person questions in the Chat SFT sets *zero-shot* skill;
* the amount of world text x pretraining steps x capacity sets what a fine-tune can reach.
Those two knobs are set against each other so that the zero-shot ranking and the fine-tuned ranking disagree.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from damoc.errors import UnknownNameError
from damoc.zoo.world import WorldSpec

# Bump when the build code changes what it writes for the same recipe (new cache folder).
BUILD_VERSION = 2
SIZES = ("test", "demo")


@dataclass(frozen=True)
class CandidateSpec:
    name: str
    family: str
    architecture: str          # transformers model_type
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    pretrain_steps: int
    mix: tuple[tuple[str, float], ...]    # (stream, weight): "world", "generic", "qa"
    sft_steps: int
    knowledge_steps: int = 0              # question/answer phase at the end of pretraining (what the Base knows)
    sft_qa_share: float = 0.0             # person questions in the Chat SFT (zero-shot skill on laws-qa)
    sft_profile_share: float = 0.0        # profiles in the Chat SFT (zero-shot skill on profiles)
    sft_style: str = "terse"              # "verbose": full-sentence answers, which short-answer metrics punish
    lr: float = 1.5e-3
    knowledge_lr: float = 1e-3
    sft_lr: float = 1e-3
    has_base: bool = True                 # False: only the Chat model ships (no W_pre, pruning skipped)
    seed: int = 0
    notes: str = ""

    def mix_dict(self) -> dict[str, float]:
        return dict(self.mix)


@dataclass(frozen=True)
class ZooRecipe:
    size: str
    world: WorldSpec = field(default_factory=WorldSpec)
    vocab_size: int = 2048
    seq_len: int = 128
    batch_size: int = 16
    sft_batch_size: int = 16
    tokenizer_docs: int = 3000            # per stream; fixed across sizes so test and demo share a vocabulary
    stream_docs: tuple[tuple[str, int], ...] = (("world", 4000), ("generic", 4000), ("qa", 2000))
    sft_samples: int = 2000
    candidates: tuple[CandidateSpec, ...] = ()
    threads: int = 2                      # torch threads when settings.threads is 0 (not part of the cache key)
    parallel: bool = False                # train candidates in worker processes, one per core (not in the key)
    version: int = BUILD_VERSION

    def cache_key(self) -> dict[str, Any]:
        d = self.to_dict()
        d.pop("threads")
        d.pop("parallel")
        return d

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def candidate(self, name: str) -> CandidateSpec:
        for c in self.candidates:
            if c.name == name:
                return c
        raise UnknownNameError("zoo candidate", name, [c.name for c in self.candidates])


def _mix(world: float, generic: float, qa: float) -> tuple[tuple[str, float], ...]:
    return tuple((k, v) for k, v in (("world", world), ("generic", generic), ("qa", qa)) if v > 0)


def _demo_candidates() -> tuple[CandidateSpec, ...]:
    # Two knobs set against each other (see the module docstring): zero-shot skill comes from the Chat SFT's answer
    # style (terse and task-like, or chatty); what a fine-tune reaches comes from the Base's knowledge phase, which
    # teaches the laws of every family, including the tail families the task's train split barely shows.
    C = CandidateSpec
    return (
        C("picollama-0.6m", "picollama", "llama", 96, 4, 4, 2, 256, pretrain_steps=300, mix=_mix(0.2, 0.5, 0.3),
          sft_steps=300, sft_qa_share=0.5, sft_profile_share=0.15, lr=2e-3, seed=11,
          notes="small; no knowledge phase; terse task-like Chat SFT"),
        C("qwenlet-0.7m", "qwenlet", "qwen3", 96, 5, 4, 2, 288, pretrain_steps=250, mix=_mix(0.3, 0.5, 0.2),
          knowledge_steps=250, sft_steps=300, sft_qa_share=0.4, sft_profile_share=0.15, has_base=False, seed=17,
          notes="Chat only (no Base); short knowledge phase; terse task-like SFT: strong zero-shot"),
        C("nanoqwen-1.4m", "nanoqwen", "qwen2", 128, 6, 4, 2, 384, pretrain_steps=250, mix=_mix(0.4, 0.4, 0.2),
          knowledge_steps=350, sft_steps=200, sft_qa_share=0.2, sft_profile_share=0.1, seed=12,
          notes="mid knowledge; some terse task-like SFT"),
        C("gemmling-1.1m", "gemmling", "gemma2", 112, 6, 4, 2, 320, pretrain_steps=200, mix=_mix(0.3, 0.7, 0.0),
          knowledge_steps=150, sft_steps=200, sft_qa_share=0.1, sft_style="verbose", seed=14,
          notes="generic-heavy pretraining; short knowledge phase; chatty SFT"),
        C("neoxie-1.1m", "neoxie", "gpt_neox", 128, 4, 4, 4, 512, pretrain_steps=250, mix=_mix(0.5, 0.5, 0.0),
          knowledge_steps=450, sft_steps=200, sft_qa_share=0.1, sft_style="verbose", has_base=False, seed=16,
          notes="Chat only (no Base); knowledgeable; chatty SFT"),
        C("phinch-1.5m", "phinch", "phi3", 96, 12, 4, 4, 256, pretrain_steps=200, mix=_mix(0.5, 0.5, 0.0),
          knowledge_steps=600, sft_steps=200, sft_qa_share=0.05, sft_style="verbose", seed=15,
          notes="deep and narrow (redundant layers for pruning); knowledgeable; chatty SFT"),
        C("mistrelle-2.7m", "mistrelle", "mistral", 160, 8, 4, 2, 448, pretrain_steps=200, mix=_mix(0.6, 0.4, 0.0),
          knowledge_steps=1200, sft_steps=200, sft_style="verbose", seed=13,
          notes="largest; longest knowledge phase; chatty SFT: weak zero-shot, best after fine-tuning"),
    )


def _test_candidates() -> tuple[CandidateSpec, ...]:
    # Same families and architectures, a fraction of the width and budget: builds in seconds, still trained
    # enough that Chat differs from Base and deep models have redundant layers.
    C = CandidateSpec
    return (
        C("picollama-test", "picollama", "llama", 48, 4, 4, 2, 128, pretrain_steps=40, mix=_mix(0.2, 0.4, 0.4),
          sft_steps=20, sft_lr=3e-3, sft_qa_share=0.4, sft_profile_share=0.1, lr=3e-3, seed=11),
        C("nanoqwen-test", "nanoqwen", "qwen2", 64, 5, 4, 2, 160, pretrain_steps=40, mix=_mix(0.3, 0.5, 0.2),
          sft_steps=20, sft_lr=3e-3, sft_qa_share=0.2, lr=3e-3, seed=12),
        C("mistrelle-test", "mistrelle", "mistral", 48, 8, 4, 2, 128, pretrain_steps=40, mix=_mix(0.6, 0.4, 0.0),
          knowledge_steps=15, sft_steps=20, sft_lr=3e-3, sft_style="verbose", lr=3e-3, seed=13),
        C("gemmling-test", "gemmling", "gemma2", 48, 4, 4, 2, 128, pretrain_steps=30, mix=_mix(0.3, 0.7, 0.0),
          sft_steps=20, sft_lr=3e-3, lr=3e-3, seed=14),
        C("phinch-test", "phinch", "phi3", 32, 10, 4, 4, 96, pretrain_steps=40, mix=_mix(0.5, 0.5, 0.0),
          knowledge_steps=15, sft_steps=20, sft_lr=3e-3, lr=3e-3, seed=15),
        C("neoxie-test", "neoxie", "gpt_neox", 48, 4, 4, 4, 192, pretrain_steps=40, mix=_mix(0.5, 0.5, 0.0),
          sft_steps=20, sft_lr=3e-3, has_base=False, lr=3e-3, seed=16),
        C("qwenlet-test", "qwenlet", "qwen3", 40, 4, 4, 2, 96, pretrain_steps=30, mix=_mix(0.2, 0.5, 0.3),
          sft_steps=20, sft_lr=3e-3, sft_qa_share=0.3, has_base=False, lr=3e-3, seed=17),
    )


def recipe(size: str) -> ZooRecipe:
    if size == "demo":
        # Candidates train in parallel processes of one thread each: these models are too small for two threads
        # to help one of them, so two cores go twice as far as two processes.
        return ZooRecipe(size="demo", candidates=_demo_candidates(), batch_size=16, seq_len=128, parallel=True,
                         stream_docs=(("world", 30000), ("generic", 30000), ("qa", 12000)), sft_samples=3000)
    if size == "test":
        # One thread: these models are so small that a second thread only adds synchronisation, and on a shared
        # machine two spinning OpenMP threads per process were measured 30x slower than one.
        return ZooRecipe(size="test", candidates=_test_candidates(), batch_size=8, seq_len=64, sft_batch_size=8,
                         threads=1,
                         stream_docs=(("world", 1500), ("generic", 1500), ("qa", 800)), sft_samples=300)
    raise UnknownNameError("zoo size", size, SIZES)


# -- Hugging Face configs ----------------------------------------------------------------------------------------
ARCHITECTURES = ("llama", "qwen2", "qwen3", "mistral", "gemma2", "phi3", "gpt_neox")


def hf_config(spec: CandidateSpec, vocab_size: int, max_positions: int, *, eos_id: int, pad_id: int) -> Any:
    """A transformers config for `spec`, with the per-architecture quirks handled (feasibility.md section 5)."""
    import transformers as tf

    head_dim = spec.hidden // spec.heads
    common: dict[str, Any] = dict(vocab_size=vocab_size, hidden_size=spec.hidden, num_hidden_layers=spec.layers,
                                  num_attention_heads=spec.heads, intermediate_size=spec.intermediate,
                                  max_position_embeddings=max_positions, tie_word_embeddings=True,
                                  pad_token_id=pad_id, bos_token_id=eos_id, eos_token_id=eos_id)
    arch = spec.architecture
    if arch == "llama":
        return tf.LlamaConfig(**common, num_key_value_heads=spec.kv_heads, head_dim=head_dim)
    if arch == "qwen2":
        return tf.Qwen2Config(**common, num_key_value_heads=spec.kv_heads, use_sliding_window=False)
    if arch == "qwen3":
        return tf.Qwen3Config(**common, num_key_value_heads=spec.kv_heads, head_dim=head_dim,
                              use_sliding_window=False)
    if arch == "mistral":
        return tf.MistralConfig(**common, num_key_value_heads=spec.kv_heads, head_dim=head_dim, sliding_window=None)
    if arch == "gemma2":
        # Gemma's default head_dim is 256 whatever the width; the sliding window is set to the context length so
        # the local layers see what the global ones see at these sequence lengths.
        return tf.Gemma2Config(**common, num_key_value_heads=spec.kv_heads, head_dim=head_dim,
                               query_pre_attn_scalar=head_dim, sliding_window=max_positions)
    if arch == "phi3":
        return tf.Phi3Config(**common, num_key_value_heads=spec.kv_heads)
    if arch == "gpt_neox":
        return tf.GPTNeoXConfig(**common)
    raise UnknownNameError("zoo architecture", arch, ARCHITECTURES)
