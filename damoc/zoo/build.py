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

from damoc.events import Log, Reporter, StageTracker
from damoc.fsutil import atomic_write_json, stable_hash
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
    return Path(out).expanduser() / f"{size}-{stable_hash(rec.to_dict())}"


def build_zoo(size: str = "test", out: str | Path | None = None, settings: Any = None,
              reporter: Reporter | None = None, register: bool = False) -> list[ZooCandidate]:
    """The pool of `size` ("test" | "demo"), built under `out` (default `settings.zoo_dir`) unless cached.

    A second call with the same recipe returns at once; `register=True` also adds the pool to the model registry.
    """
    from damoc.settings import Settings

    settings = settings or Settings.load()
    rec = recipe(size)
    folder = pool_folder(size, Path(out) if out is not None else settings.zoo_dir)
    manifest = cached_build(folder, lambda tmp: _build_pool(tmp, rec, settings, reporter))
    candidates = [_candidate(folder, c) for c in manifest["candidates"]]
    if register:
        _register(settings, candidates, reporter)
    return candidates


def load_manifest(size: str, out: str | Path | None = None, settings: Any = None) -> dict[str, Any] | None:
    """The manifest of a built pool, or None when that pool is not built (never builds)."""
    from damoc.fsutil import read_json
    from damoc.settings import Settings
    from damoc.zoo.cache import MANIFEST

    settings = settings or Settings.load()
    folder = pool_folder(size, Path(out) if out is not None else settings.zoo_dir)
    return read_json(folder / MANIFEST)


def _candidate(folder: Path, c: dict[str, Any]) -> ZooCandidate:
    return ZooCandidate(name=c["name"], architecture=c["architecture"], parameters=c["parameters"],
                        layers=c["layers"], hidden_size=c["hidden_size"], chat_path=str(folder / c["chat"]),
                        base_path=str(folder / c["base"]) if c.get("base") else None, family=c.get("family", ""),
                        notes=c.get("notes", ""))


def _register(settings: Any, candidates: list[ZooCandidate], reporter: Reporter | None) -> None:
    try:
        from damoc.registry import register_zoo
    except ImportError as e:   # the registry module is optional for building; say so instead of failing the build
        if reporter is not None:
            reporter.emit(Log(level="warning", message=f"zoo not registered: model registry unavailable ({e})"))
        return
    register_zoo(settings, candidates)


def _build_pool(tmp: Path, rec: ZooRecipe, settings: Any, reporter: Reporter | None) -> None:
    import torch

    from damoc.models import hf_offline_env, resolve_device, set_threads
    from damoc.zoo import world as W
    from damoc.zoo.pretrain import encode_chat_pairs, encode_stream, pretrain, sft
    from damoc.zoo.tokenizer import END, EOS, PAD, save_base_tokenizer, save_chat_tokenizer, train_tokenizer

    hf_offline_env(settings)
    set_threads(settings.threads)
    device = resolve_device(settings.device)
    t0 = time.perf_counter()

    data = StageTracker(reporter, "zoo-data").start(3)
    world = W.make_world(rec.world)
    # The tokenizer corpus is fixed (same for every size) so test and demo pools share one vocabulary.
    tok_texts = [d for i, s in enumerate(W.STREAMS) for d in W.documents(world, s, rec.tokenizer_docs, 7000 + i)]
    tok_texts += [f"{u}\n{a}" for u, a in W.sft_pairs(world, rec.tokenizer_docs, 0.3, 7100, 0.1)]
    tokenizer = train_tokenizer(tok_texts, rec.vocab_size)
    data.advance(1, "tokenizer")
    save_base_tokenizer(tokenizer, tmp / "tokenizer")
    eos_id, pad_id = tokenizer.convert_tokens_to_ids(EOS), tokenizer.convert_tokens_to_ids(PAD)
    end_id = tokenizer.convert_tokens_to_ids(END)
    streams = {s: encode_stream(tokenizer, W.documents(world, s, n, 8000 + i))
               for i, (s, n) in enumerate(rec.stream_docs)}
    data.advance(1, "corpus")
    stream_tokens = {s: int(v.numel()) for s, v in streams.items()}
    data.finish(tokens=stream_tokens, vocab=len(tokenizer))

    entries = []
    for spec in rec.candidates:
        t_c = time.perf_counter()
        torch.manual_seed(spec.seed)
        model = _new_model(spec, rec, eos_id, pad_id)
        pre = StageTracker(reporter, "pretrain", candidate=spec.name)
        losses = pretrain(model, streams, spec.mix_dict(), steps=spec.pretrain_steps, batch_size=rec.batch_size,
                          seq_len=rec.seq_len, lr=spec.lr, seed=spec.seed, device=device, tracker=pre)
        pre.finish(loss=round(sum(losses[-10:]) / max(1, len(losses[-10:])), 4))
        base_rel = None
        if spec.has_base:
            base_rel = f"{spec.name}/base"
            _save(model, tmp / base_rel, eos_ids=[eos_id], pad_id=pad_id)
            save_base_tokenizer(tokenizer, tmp / base_rel)
        pairs = W.sft_pairs(world, rec.sft_samples, spec.sft_qa_share, 9000 + spec.seed, spec.sft_profile_share)
        tr = StageTracker(reporter, "sft", candidate=spec.name)
        sft_losses = sft(model, encode_chat_pairs(tokenizer, pairs), steps=spec.sft_steps,
                         batch_size=rec.sft_batch_size, lr=spec.sft_lr, seed=spec.seed, pad_id=pad_id,
                         device=device, tracker=tr)
        tr.finish(loss=round(sum(sft_losses[-10:]) / max(1, len(sft_losses[-10:])), 4))
        chat_rel = f"{spec.name}/chat"
        _save(model, tmp / chat_rel, eos_ids=[end_id, eos_id], pad_id=pad_id)
        save_chat_tokenizer(tokenizer, tmp / chat_rel)
        entries.append({
            "name": spec.name, "family": spec.family, "architecture": model.config.model_type,
            "parameters": sum(p.numel() for p in model.parameters()), "layers": spec.layers,
            "hidden_size": spec.hidden, "chat": chat_rel, "base": base_rel, "notes": spec.notes,
            "pretrain_loss": round(sum(losses[-10:]) / max(1, len(losses[-10:])), 4),
            "sft_loss": round(sum(sft_losses[-10:]) / max(1, len(sft_losses[-10:])), 4),
            "seconds": round(time.perf_counter() - t_c, 2),
        })
        del model
    atomic_write_json(tmp / "manifest.json", {
        "size": rec.size, "recipe_hash": stable_hash(rec.to_dict()), "recipe": rec.to_dict(),
        "candidates": entries, "device": device, "torch_threads": torch.get_num_threads(),
        "stream_tokens": stream_tokens, "seconds": round(time.perf_counter() - t0, 2),
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
