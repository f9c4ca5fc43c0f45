"""A one-candidate zoo recipe that builds in seconds, for the zoo builder's tests (in-process and in subprocesses)."""
from __future__ import annotations

from damoc.zoo.specs import CandidateSpec, ZooRecipe


def mini_recipe(pretrain_steps: int = 3) -> ZooRecipe:
    spec = CandidateSpec("mini", "mini", "llama", 32, 2, 2, 1, 64, pretrain_steps=pretrain_steps,
                         mix=(("world", 1.0),), sft_steps=2, seed=1)
    return ZooRecipe(size="test", candidates=(spec,), tokenizer_docs=150, batch_size=2, seq_len=32,
                     stream_docs=(("world", 60),), sft_samples=10, threads=1)
