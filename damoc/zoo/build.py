"""Build (or load from cache) a pool of tiny Chat/Base pairs.

Layout of one pool, `<out>/<size>-<recipe hash>/`:

    manifest.json            recipe, candidates, build times, device
    tokenizer/               the shared BPE (no chat template)
    <name>/base/             Base: pretrained from scratch (absent for Chat-only candidates)
    <name>/chat/             Chat: Base + instruction SFT, with the chat template

Every folder loads with `AutoModelForCausalLM` / `AutoTokenizer.from_pretrained`, like a Hub checkpoint.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from damoc.events import Reporter, StageTracker
from damoc.fsutil import atomic_write_json, stable_hash
from damoc.settings import Settings
from damoc.zoo.cache import cached_build
from damoc.zoo.specs import CandidateSpec, ZooRecipe, hf_config, recipe


@dataclass
class ZooCandidate:
    name: str
    architecture: str              # transformers model_type
    parameters: int
    layers: int
    hidden_size: int
    chat_path: str
    base_path: str | None          # None: the candidate ships no Base (no W_pre; pruning is skipped)
    family: str = ""
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pool_folder(size: str, out: Path) -> Path:
    rec = recipe(size)
    return Path(out).expanduser() / f"{size}-{stable_hash(rec.cache_key())}"


def build_zoo(size: str = "test", out: str | Path | None = None, settings: Settings | None = None,
              reporter: Reporter | None = None, register: bool = False) -> list[ZooCandidate]:
    """The pool of `size` ("test" | "demo"), built under `out` (default `settings.zoo_dir`) unless cached.

    A second call with the same recipe returns at once; `register=True` also adds the pool to the model registry.
    """
    settings = settings or Settings.load()
    rec = recipe(size)
    folder = pool_folder(size, Path(out) if out is not None else settings.zoo_dir)
    manifest = cached_build(folder, lambda tmp: _build_pool(tmp, rec, settings, reporter))
    candidates = [_candidate(folder, c) for c in manifest["candidates"]]
    if register:
        from damoc.registry import register_zoo

        register_zoo(settings, candidates)
    return candidates


def load_manifest(size: str, out: str | Path | None = None, settings: Settings | None = None) -> dict[str, Any] | None:
    """The manifest of a built pool, or None when that pool is not built (never builds)."""
    from damoc.zoo.cache import read_manifest

    settings = settings or Settings.load()
    folder = pool_folder(size, Path(out) if out is not None else settings.zoo_dir)
    return read_manifest(folder)


def _candidate(folder: Path, c: dict[str, Any]) -> ZooCandidate:
    return ZooCandidate(name=c["name"], architecture=c["architecture"], parameters=c["parameters"],
                        layers=c["layers"], hidden_size=c["hidden_size"], chat_path=str(folder / c["chat"]),
                        base_path=str(folder / c["base"]) if c.get("base") else None, family=c.get("family", ""),
                        notes=c.get("notes", ""))


def _build_pool(tmp: Path, rec: ZooRecipe, settings: Settings, reporter: Reporter | None) -> None:
    import torch

    from damoc.models import hf_offline_env, resolve_device, set_threads, usable_cores

    hf_offline_env(settings)
    device = resolve_device(settings.device)
    before = torch.get_num_threads()
    set_threads(settings.threads or min(rec.threads, usable_cores()))
    try:
        _train_and_save(tmp, rec, device, reporter, _workers(rec, device, settings))
    finally:            # build_zoo runs inside callers' processes (the test session): leave their setting alone
        torch.set_num_threads(before)


@dataclass
class PoolData:
    """What every candidate of a pool trains on: the world, the shared tokenizer and the packed token streams."""

    world: Any
    tokenizer: Any
    streams: dict[str, Any]
    eos_id: int
    pad_id: int
    end_id: int


def prepare_data(rec: ZooRecipe, reporter: Reporter | None = None) -> PoolData:
    from damoc.zoo import world as W
    from damoc.zoo.pretrain import encode_stream
    from damoc.zoo.tokenizer import END, EOS, PAD, train_tokenizer

    data = StageTracker(reporter, "zoo-data").start(2)
    world = W.make_world(rec.world)
    # The tokenizer corpus is fixed (same for every size) so test and demo pools share one vocabulary.
    tok_texts = [d for i, s in enumerate(W.STREAMS) for d in W.documents(world, s, rec.tokenizer_docs, 7000 + i)]
    tok_texts += [f"{u}\n{a}" for u, a in W.sft_pairs(world, rec.tokenizer_docs, 0.3, 7100, 0.1)]
    tokenizer = train_tokenizer(tok_texts, rec.vocab_size)
    data.advance(1, "tokenizer")
    streams = {s: encode_stream(tokenizer, W.documents(world, s, n, 8000 + i))
               for i, (s, n) in enumerate(rec.stream_docs)}
    data.advance(1, "corpus")
    data.finish(tokens={s: int(v.numel()) for s, v in streams.items()}, vocab=len(tokenizer))
    return PoolData(world, tokenizer, streams, eos_id=tokenizer.convert_tokens_to_ids(EOS),
                    pad_id=tokenizer.convert_tokens_to_ids(PAD), end_id=tokenizer.convert_tokens_to_ids(END))


def train_candidate(spec: CandidateSpec, rec: ZooRecipe, data: PoolData, folder: Path, device: str,
                    reporter: Reporter | None = None) -> dict[str, Any]:
    """Pretrain the Base, save it (if the candidate ships one), run the Chat SFT, save the Chat. Returns the
    manifest entry, with paths relative to `folder`."""
    import torch

    from damoc.zoo import world as W
    from damoc.zoo.pretrain import encode_chat_pairs, pretrain, sft
    from damoc.zoo.tokenizer import save_base_tokenizer, save_chat_tokenizer

    t_c = time.perf_counter()
    torch.manual_seed(spec.seed)
    model = _new_model(spec, rec, data.eos_id, data.pad_id)
    pre = StageTracker(reporter, "pretrain", candidate=spec.name)
    losses = pretrain(model, data.streams, spec.mix_dict(), steps=spec.pretrain_steps, batch_size=rec.batch_size,
                      seq_len=rec.seq_len, lr=spec.lr, seed=spec.seed, device=device, tracker=pre)
    pre.finish(loss=_tail(losses))
    know_losses: list[float] = []
    if spec.knowledge_steps:
        # Instruction-formatted question/answer data with the loss on answers, as in instruction pre-training
        # (Cheng et al. 2024, arXiv 2406.14491). Measured here: the same pairs inside packed pretraining windows, or
        # in a plain "Question/Answer" frame, were learned slowly and did not carry over to the chat frame that
        # fine-tuning and evaluation use; in the chat frame the laws survive the Chat SFT and the fine-tune.
        kn = StageTracker(reporter, "knowledge", candidate=spec.name)
        pairs = W.knowledge_pairs(data.world, spec.knowledge_steps * rec.sft_batch_size, 6000 + spec.seed)
        know_losses = sft(model, encode_chat_pairs(data.tokenizer, pairs), steps=spec.knowledge_steps,
                          batch_size=rec.sft_batch_size, lr=spec.knowledge_lr, seed=spec.seed, pad_id=data.pad_id,
                          device=device, tracker=kn)
        kn.finish(loss=_tail(know_losses))
    base_rel = None
    if spec.has_base:
        base_rel = f"{spec.name}/base"
        _save(model, folder / base_rel, eos_ids=[data.eos_id], pad_id=data.pad_id)
        save_base_tokenizer(data.tokenizer, folder / base_rel)
    pairs = W.sft_pairs(data.world, rec.sft_samples, spec.sft_qa_share, 9000 + spec.seed, spec.sft_profile_share,
                        spec.sft_style)
    tr = StageTracker(reporter, "sft", candidate=spec.name)
    sft_losses = sft(model, encode_chat_pairs(data.tokenizer, pairs), steps=spec.sft_steps,
                     batch_size=rec.sft_batch_size, lr=spec.sft_lr, seed=spec.seed, pad_id=data.pad_id,
                     device=device, tracker=tr)
    tr.finish(loss=_tail(sft_losses))
    chat_rel = f"{spec.name}/chat"
    _save(model, folder / chat_rel, eos_ids=[data.end_id, data.eos_id], pad_id=data.pad_id)
    save_chat_tokenizer(data.tokenizer, folder / chat_rel)
    return {
        "name": spec.name, "family": spec.family, "architecture": model.config.model_type,
        "parameters": sum(p.numel() for p in model.parameters()), "layers": spec.layers,
        "hidden_size": spec.hidden, "chat": chat_rel, "base": base_rel, "notes": spec.notes,
        "pretrain_loss": _tail(losses), "knowledge_loss": _tail(know_losses) if know_losses else None,
        "sft_loss": _tail(sft_losses),
        "seconds": round(time.perf_counter() - t_c, 2),
    }


def _tail(losses: list[float], n: int = 10) -> float:
    return round(sum(losses[-n:]) / max(1, len(losses[-n:])), 4)


def _workers(rec: ZooRecipe, device: str, settings: Settings) -> int:
    """Processes that train candidates side by side: one per free core on CPU for a parallel recipe, else 1 (a GPU
    is better used by one process; `settings.threads` set by the user means "this many threads, one process")."""
    from damoc.models import usable_cores

    if not rec.parallel or device != "cpu" or settings.threads or len(rec.candidates) < 2:
        return 1
    # Every core this process may use. Not discounted by the load average: a job that just ended still weighs on
    # the 1-minute average, and one slow worker for the whole build costs far more than a shared core. (A busy
    # shared machine: DAMOC_THREADS=1 builds in one process with one thread.)
    return min(usable_cores(), len(rec.candidates))


def _train_and_save(tmp: Path, rec: ZooRecipe, device: str, reporter: Reporter | None, workers: int = 1) -> None:
    import torch

    from damoc.zoo.tokenizer import save_base_tokenizer

    t0 = time.perf_counter()
    data = prepare_data(rec, reporter)
    save_base_tokenizer(data.tokenizer, tmp / "tokenizer")
    if workers > 1:
        from damoc.zoo.parallel import train_in_processes

        entries = train_in_processes(rec, data, tmp, device, reporter, workers)
    else:
        entries = [train_candidate(spec, rec, data, tmp, device, reporter) for spec in rec.candidates]
    atomic_write_json(tmp / "manifest.json", {
        "size": rec.size, "recipe_hash": stable_hash(rec.cache_key()), "recipe": rec.to_dict(),
        "candidates": entries, "device": device, "workers": workers,
        "torch_threads": 1 if workers > 1 else torch.get_num_threads(),
        "stream_tokens": {s: int(v.numel()) for s, v in data.streams.items()}, "vocab": len(data.tokenizer),
        "seconds": round(time.perf_counter() - t0, 2),
    })


def _new_model(spec: CandidateSpec, rec: ZooRecipe, eos_id: int, pad_id: int) -> Any:
    from transformers import AutoModelForCausalLM

    cfg = hf_config(spec, rec.vocab_size, max_positions=512, eos_id=eos_id, pad_id=pad_id)
    return AutoModelForCausalLM.from_config(cfg)


def _save(model: Any, folder: Path, *, eos_ids: list[int], pad_id: int) -> None:
    """Save in fp32 safetensors with a generation config that stops at the right EOS (greedy by default)."""
    from transformers import GenerationConfig

    folder.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(eos_token_id=eos_ids if len(eos_ids) > 1 else eos_ids[0],
                                               pad_token_id=pad_id, bos_token_id=eos_ids[-1], do_sample=False)
    model.config.eos_token_id = eos_ids[0]
    model.to("cpu").save_pretrained(str(folder))
