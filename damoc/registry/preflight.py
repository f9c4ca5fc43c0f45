"""Pre-flight estimate: disk to download, memory for calibration and for full / LoRA proxy fine-tuning, and which
stages will be skipped for which candidate and why. Used by `damoc run --dry-run` and the TUI wizard.

The memory formula (bytes; documented in docs/registry.md, and shown as a breakdown so a wrong term is visible):

    P parameters, L layers, h hidden size, I MLP intermediate size, a attention heads, V vocabulary,
    b batch size, s sequence length, w bytes per weight/activation (2 for bf16 on CUDA, 4 for fp32 on CPU)

    weights              P·w
    calibration          weights + b·s·h·(L+1)·w      hidden states of every layer (layer-importance scoring)
                                 + b·s·(2I+4h)·w      one layer's working set
                                 + b·a·s²·w           one layer's attention scores (eager attention, upper bound)
                                 + b·s·V·4            fp32 logits
    activations (train)  L·s·b·h·(34 + 5·a·s/h)·w/2   Korthikanti et al. 2022, "Reducing Activation Recomputation
                                                      in Large Transformer Models", eq. 2 without parallelism
                         with gradient checkpointing: L·2·s·b·h·w/2 + one layer's (34 + 5·a·s/h)·s·b·h·w/2
    full fine-tune       weights + gradients P·w + AdamW moments 8·P + fp32 master copy 4·P (only when w = 2)
                         + activations + logits and their gradient b·s·V·8
    LoRA fine-tune       weights (frozen) + trainable T·(2w + 8 + 4·[w=2]) + activations + b·s·V·8
                         T = L·r·Σ_targets(d_in + d_out) over q,k,v,o,gate,up,down by default
    prune + merge        max(min(pruned size, one output shard) + 8 fp32 copies of h·I,  2·largest tensor)
                         the streamed merge (damoc.prune.api.write_pruned): the output shard being filled, the merge's
                         working set for one matrix, or the first read of the embedding (file pages + its copy)
    + a fixed runtime overhead (CPU 0.5 GB for Python + torch + transformers; CUDA 1.0 GB for the context and
      allocator slack; 0.3 GB for the streamed merge, which needs torch and safetensors only)

These are upper bounds for the un-pruned model: DaMoC prunes layers before the proxy fine-tune, so the real proxy
needs less. Disk for a run: the pruned proxy (at most the Chat's size) plus the fine-tuned output (full: the same
again; LoRA: the adapter).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from damoc.errors import ConfigError
from damoc.prune.api import BF16_ON_CPU_BYTES
from damoc.prune.config import DEFAULT_MAX_FRACTION, SHARD_BYTES
from damoc.registry.models import Candidate, human_bytes
from damoc.settings import Settings

GB = 1e9
# "stream": a process that only streams safetensors (torch + safetensors imported: 0.23 GB measured, 0.28 GB beside
# the shard buffer at the merge's peak on the synthetic pairs, bench/real_scale.py)
OVERHEAD = {"cpu": int(0.5 * GB), "cuda": int(1.0 * GB), "stream": int(0.3 * GB)}
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

_ALIASES = {
    "seq_len": ("seq_len", "max_seq_len", "max_length", "max_len", "cutoff_len", "block_size"),
    "batch_size": ("batch_size", "per_device_train_batch_size", "train_batch_size"),
    "calib_batch_size": ("calib_batch_size", "calibration_batch_size"),
    "finetune": ("finetune", "finetune_mode", "ft_mode", "method", "tuning"),
    "lora_rank": ("lora_rank", "lora_r", "r", "rank"),
    "lora_targets": ("lora_targets", "target_modules"),
    "lora_dropout": ("lora_dropout",),
    "answer_tokens": ("answer_tokens",),
    "gradient_checkpointing": ("gradient_checkpointing", "grad_checkpointing"),
    "prune": ("prune", "pruning", "enable_prune"),
    "device": ("device",),
    "dtype": ("dtype", "torch_dtype"),
}


@dataclass
class PreflightConfig:
    """The parts of a run configuration that drive the estimate (other keys are ignored)."""

    seq_len: int = 512
    batch_size: int = 4
    calib_batch_size: int = 8
    finetune: str = "lora"                  # lora | full | both
    lora_rank: int = 8
    lora_targets: tuple[str, ...] = DEFAULT_TARGETS
    lora_dropout: float = 0.05
    answer_tokens: int | None = None        # tokens per sample the loss covers; None = seq_len (an upper bound)
    gradient_checkpointing: bool = False
    prune: bool = True
    device: str = "auto"
    dtype: str | None = None                # None: bf16 on CUDA, fp32 on CPU (as damoc.models.default_dtype)

    @classmethod
    def from_dict(cls, config: dict[str, Any] | None) -> "PreflightConfig":
        """Accepts a flat dict or one nested a level deep (e.g. {"finetune": {"mode": "lora", "lora_r": 8}})."""
        cfg = cls()
        if not config:
            return cfg
        if not isinstance(config, dict):
            raise ConfigError(f"pre-flight config must be a mapping, got {type(config).__name__}",
                              "pass the run configuration as a dict")
        flat: dict[str, Any] = {}
        for k, v in config.items():
            if isinstance(v, dict):
                if k in ("prune", "pruning") and "enabled" in v:
                    flat["prune"] = v["enabled"]
                if k in ("finetune", "ft") and "mode" in v:
                    flat["finetune"] = v["mode"]
                flat.update({kk: vv for kk, vv in v.items() if kk not in ("mode", "enabled")})
            else:
                flat[k] = v
        for fname, keys in _ALIASES.items():
            for k in keys:
                if k in flat and flat[k] is not None:
                    setattr(cfg, fname, _coerce(fname, flat[k]))
                    break
        if cfg.finetune not in ("lora", "full", "both"):
            raise ConfigError(f"finetune mode {cfg.finetune!r} is not one of lora, full, both",
                              "set finetune to lora, full or both")
        return cfg


def _coerce(name: str, value: Any) -> Any:
    try:
        if name == "lora_dropout":
            v = float(value)
            if not 0 <= v < 1:
                raise ValueError
            return v
        if name in ("seq_len", "batch_size", "calib_batch_size", "lora_rank", "answer_tokens"):
            v = int(value)
            if v <= 0:
                raise ValueError
            return v
        if name in ("gradient_checkpointing", "prune"):
            if isinstance(value, str):
                return value.lower() in ("1", "true", "yes", "on")
            return bool(value)
        if name == "lora_targets":
            return tuple([value] if isinstance(value, str) else value)
        if name == "dtype":
            return str(value).replace("torch.", "")
        return str(value).lower()
    except (TypeError, ValueError):
        raise ConfigError(f"pre-flight: {name} = {value!r} is not valid", f"give {name} a positive number") from None


@dataclass
class MemoryEstimate:
    """Bytes, term by term. `total` includes the runtime overhead."""

    weights: int = 0
    loading: int = 0                         # a checkpoint's file pages mapped while it is read
    gradients: int = 0
    optimizer: int = 0
    activations: int = 0
    logits: int = 0
    overhead: int = 0
    trainable_parameters: int = 0

    @property
    def total(self) -> int:
        return (self.weights + self.loading + self.gradients + self.optimizer + self.activations + self.logits
                + self.overhead)

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}


@dataclass
class StagePlan:
    stage: str
    status: str                              # run | skip | blocked
    reason: str = ""


@dataclass
class CandidatePreflight:
    name: str
    local: bool
    download_bytes: int
    download_estimated: bool
    work_disk_bytes: int
    calibration: MemoryEstimate | None
    full_ft: MemoryEstimate | None
    lora_ft: MemoryEstimate | None
    stages: list[StagePlan] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    facts_from: str = ""

    @property
    def skipped(self) -> list[StagePlan]:
        return [s for s in self.stages if s.status != "run"]

    def peak_memory(self, finetune: str) -> int:
        parts = [self.calibration] if any(s.stage == "calibrate" and s.status == "run" for s in self.stages) else []
        if finetune in ("full", "both"):
            parts.append(self.full_ft)
        if finetune in ("lora", "both"):
            parts.append(self.lora_ft)
        return max((p.total for p in parts if p is not None), default=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "local": self.local, "download_bytes": self.download_bytes,
            "download_estimated": self.download_estimated, "work_disk_bytes": self.work_disk_bytes,
            "memory": {k: (v.to_dict() if v else None) for k, v in
                       (("calibration", self.calibration), ("full_ft", self.full_ft), ("lora_ft", self.lora_ft))},
            "stages": [asdict(s) for s in self.stages],
            "skipped": [{"stage": s.stage, "status": s.status, "reason": s.reason} for s in self.skipped],
            "notes": self.notes, "facts_from": self.facts_from,
        }


@dataclass
class Preflight:
    config: PreflightConfig
    device: str
    bytes_per_weight: int
    candidates: list[CandidatePreflight]
    total_download_bytes: int
    total_work_disk_bytes: int
    peak_memory_bytes: int                   # candidates run one after another: the largest need
    memory_available_bytes: int | None
    disk_free_bytes: int | None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config), "device": self.device, "bytes_per_weight": self.bytes_per_weight,
            "candidates": [c.to_dict() for c in self.candidates],
            "totals": {"download_bytes": self.total_download_bytes, "work_disk_bytes": self.total_work_disk_bytes,
                       "peak_memory_bytes": self.peak_memory_bytes,
                       "memory_available_bytes": self.memory_available_bytes,
                       "disk_free_bytes": self.disk_free_bytes},
            "warnings": self.warnings,
        }


# -- the formula ----------------------------------------------------------------------------------------------------

@dataclass
class _Dims:
    P: int
    L: int
    h: int
    I: int
    a: int
    kv: int
    V: int


def _dims(c: Candidate) -> _Dims | None:
    f = c.chat_facts
    h, L, V = f.hidden_size, f.layers, f.vocab_size or 32000
    if not h or not L:
        return None
    P = f.parameters or int(L * 12 * h * h + V * h)
    a = f.attention_heads or max(1, h // 128)
    kv = f.kv_heads or a
    I = f.intermediate_size
    if not I:   # per layer ≈ 4h² (attention) + 3hI (gated MLP): solve for I from the parameter count
        per_layer = max(0, (P - V * h) / L - 4 * h * h)
        I = int(per_layer / (3 * h)) or 4 * h
    return _Dims(int(P), int(L), int(h), int(I), int(a), int(kv), int(V))


def dims_of_config(cfg: dict[str, Any], parameters: int | None = None) -> _Dims:
    """The formula's dimensions from a config.json; P counted from the architecture's shapes when not given
    (tied embeddings once, Qwen2's q/k/v biases included)."""
    h, L = int(cfg["hidden_size"]), int(cfg["num_hidden_layers"])
    a = int(cfg.get("num_attention_heads") or max(1, h // 128))
    kv = int(cfg.get("num_key_value_heads") or a)
    V = int(cfg.get("vocab_size") or 32000)
    I = int(cfg.get("intermediate_size") or 4 * h)
    hd = int(cfg.get("head_dim") or h // a)
    if parameters is None:
        bias = (a + 2 * kv) * hd if cfg.get("model_type") == "qwen2" or cfg.get("attention_bias") else 0
        per_layer = h * a * hd * 2 + 2 * h * kv * hd + bias + 3 * h * I + 2 * h
        parameters = L * per_layer + V * h * (1 if cfg.get("tie_word_embeddings", True) else 2) + h
    return _Dims(int(parameters), L, h, I, a, kv, V)


def _head_dim(d: _Dims) -> int:
    return d.h // max(1, d.a)


def _train_activations(d: _Dims, b: int, s: int, w: int, checkpointing: bool) -> int:
    """Activation memory at the training peak per decoder layer, SDPA attention (transformers' default; no s²
    scores): 20 hidden-size + 6 MLP-width + 4 KV-width tensors of b·s rows. Counted, backward keeps about 12 + 4 + 4
    (the RMSNorms' fp32 intermediates, q and its RoPE, attention output, o_proj input, residual; gate, up, SiLU,
    product; k, v, RoPE'd k); measured at 0.5B-1B on CPU the peak holds ~1.5x that, blocks freed during backward
    that the allocator keeps (bench/real_scale.py)."""
    per_layer = b * s * (20 * d.h + 6 * d.I + 4 * d.kv * _head_dim(d)) * w
    if checkpointing:
        return int(d.L * b * s * d.h * w + per_layer)
    return int(d.L * per_layer)


def _lora_dropout_copies(d: _Dims, b: int, s: int, w: int, dropout: float) -> int:
    """peft applies dropout to each adapted module's input and keeps the result and its mask for backward:
    q, k, v, gate, up read h-wide inputs, o another h-wide one, down an MLP-wide one."""
    if dropout <= 0:
        return 0
    return int(d.L * b * s * (6 * d.h + d.I) * w * 1.25)


def lora_trainable(d: _Dims, rank: int, targets: tuple[str, ...]) -> int:
    head = _head_dim(d)
    shapes = {"q_proj": (d.h, d.a * head), "k_proj": (d.h, d.kv * head), "v_proj": (d.h, d.kv * head),
              "o_proj": (d.a * head, d.h), "gate_proj": (d.h, d.I), "up_proj": (d.h, d.I), "down_proj": (d.I, d.h)}
    return d.L * rank * sum(sum(shapes.get(t, (d.h, d.h))) for t in targets)


def _largest_tensor(d: _Dims) -> int:
    return max(d.V * d.h, d.h * d.I)


def estimate_memory(d: _Dims, cfg: PreflightConfig, w: int, device: str, *,
                    checkpoint_bytes: int | None = None) -> tuple[MemoryEstimate, MemoryEstimate, MemoryEstimate]:
    """(calibration, full fine-tune, LoRA fine-tune) for the model of `d`; the formula is the module docstring's."""
    cuda = device.startswith("cuda")
    b, s, bc = cfg.batch_size, cfg.seq_len, cfg.calib_batch_size
    over = OVERHEAD["cuda" if cuda else "cpu"]
    ckpt = checkpoint_bytes if checkpoint_bytes is not None else d.P * 2
    # calibration: the Chat loaded (its file mapped while the weights are built), one layer's working set
    w_c = w if cuda or ckpt <= BF16_ON_CPU_BYTES else 2
    calib = MemoryEstimate(weights=d.P * w_c, loading=0 if cuda else ckpt, overhead=over,
                           activations=int(bc * s * (2 * d.I + 7 * d.h) * w_c))
    # training: fp32 weights (full fine-tuning keeps fp32 master weights and autocasts to bf16 on CUDA)
    wa = 2 if cuda else 4                                    # activations: bf16 under autocast, fp32 on CPU
    acts = _train_activations(d, b, s, wa, cfg.gradient_checkpointing)
    pos = min(s, cfg.answer_tokens or s)                     # positions the LM head runs on (trim_prompt_logits)
    logits = b * pos * d.V * (14 if cuda else 12)            # logits (+ an fp32 copy on CUDA), log-softmax, grad
    step_tmp = d.P * 4 if cuda else _largest_tensor(d) * 4   # AdamW's temporaries: foreach on CUDA, per tensor on CPU
    autocast = d.P * 2 if cuda else 0                        # bf16 copies of the weights autocast caches
    full = MemoryEstimate(weights=d.P * 4 + autocast, gradients=d.P * 4, optimizer=d.P * 8 + step_tmp,
                          activations=acts, logits=logits, overhead=over, trainable_parameters=d.P)
    T = lora_trainable(d, cfg.lora_rank, cfg.lora_targets)
    lora = MemoryEstimate(weights=d.P * w + T * 4, gradients=T * 4, optimizer=T * 12,
                          activations=acts + _lora_dropout_copies(d, b, s, wa, cfg.lora_dropout), logits=logits,
                          overhead=over, trainable_parameters=T)
    return calib, full, lora


def stage_estimates(d: _Dims, cfg: PreflightConfig, *, device: str = "cpu", w: int | None = None,
                    checkpoint_bytes: int | None = None, eval_batch: int | None = None,
                    out_bytes: int | None = None, shard_bytes: int = SHARD_BYTES) -> dict[str, MemoryEstimate]:
    """Every stage's estimate for one model: calibration, prune (the streamed merge), full_ft, lora_ft, evaluate."""
    cuda = device.startswith("cuda")
    w = w or (2 if cuda else 4)
    ckpt = checkpoint_bytes if checkpoint_bytes is not None else d.P * 2
    calib, full, lora = estimate_memory(d, cfg, w, device, checkpoint_bytes=ckpt)
    over = OVERHEAD["cuda" if cuda else "cpu"]
    # prune + merge streams tensor by tensor (damoc.prune.api.write_pruned; the reader keeps no file mapped between
    # reads): the output shard being filled, plus, while a kept matrix takes the merged layers, the merge's fp32
    # working set for it: kept W, Chat - Base in place, the bf16 reads on their way to fp32 and torch.topk's buffers
    # for the sparsifier (8 fp32 copies of the largest layer matrix at the peak, measured: 8-9 on Llama-3.2-1B).
    # The first read of the largest tensor holds its file pages and its copy at once.
    if out_bytes is None:        # the pruning cap: floor(max_fraction * L) layers removed
        per_layer = (d.P - d.V * d.h) / max(1, d.L) * ckpt / max(1, d.P)
        out_bytes = int(ckpt - int(DEFAULT_MAX_FRACTION * d.L) * per_layer)
    merge_set = 8 * d.h * d.I * 4
    first_read = 2 * _largest_tensor(d) * ckpt // max(1, d.P)
    shard = min(out_bytes, shard_bytes)
    prune = (MemoryEstimate(loading=shard, activations=merge_set, overhead=OVERHEAD["stream"])
             if shard + merge_set >= first_read else MemoryEstimate(loading=first_read, overhead=OVERHEAD["stream"]))
    eb = eval_batch or (64 if cuda else 16)
    s = cfg.seq_len
    kv_cache = eb * s * d.L * 2 * d.kv * _head_dim(d) * w
    # generation runs the LM head on the last position only; the log-likelihood pass from the batch's first scored
    # position on (damoc.backends.hf): answer_tokens of the sequence. On CPU the checkpoint's file pages stay
    # mapped while the weights load (the peak of a small model's evaluation, measured on the synthetic pairs)
    evaluate = MemoryEstimate(weights=d.P * w, loading=0 if cuda else ckpt, activations=kv_cache,
                              logits=eb * min(s, cfg.answer_tokens or s) * d.V * 4, overhead=over)
    return {"calibration": calib, "prune": prune, "full_ft": full, "lora_ft": lora, "evaluate": evaluate}


# -- machine facts (no torch import: the TUI calls this on its event loop's worker) --------------------------------

def _device(cfg: PreflightConfig, settings: Settings) -> str:
    dev = cfg.device if cfg.device not in ("", "auto") else (settings.device or "auto")
    if dev in ("", "auto"):
        return "cuda" if _gpu_memory() else "cpu"
    return dev


def _gpu_memory() -> int | None:
    """Total memory of the first CUDA GPU via nvidia-smi (None when there is none)."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=5)
        return int(out.stdout.split()[0]) * 1024 * 1024 if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None


def _ram_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _disk_free(path: Path) -> int | None:
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


# -- the public entry point -----------------------------------------------------------------------------------------

def preflight(settings: Settings, names: list[str], config: dict[str, Any] | None = None) -> Preflight:
    """Estimate what running `names` with `config` needs. Unknown names raise UnknownNameError."""
    from damoc.registry.hfcache import hf_cache_dir
    from damoc.registry.store import RegistryStore

    cfg = PreflightConfig.from_dict(config)
    device = _device(cfg, settings)
    if cfg.dtype:
        w = {"float32": 4, "fp32": 4, "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2}.get(cfg.dtype, 4)
    else:
        w = 2 if device.startswith("cuda") else 4
    store = RegistryStore(settings)
    hub = store.hub_facts()
    from damoc.registry.assess import assess

    results: list[CandidatePreflight] = []
    for n in names:
        c = assess(store.find(n), hub)
        results.append(_one(c, cfg, w, device))
    total_dl = sum(r.download_bytes for r in results)
    work = sum(r.work_disk_bytes for r in results)
    peak = max((r.peak_memory(cfg.finetune) for r in results), default=0)
    mem = _gpu_memory() if device.startswith("cuda") else _ram_available()
    disk = _disk_free(hf_cache_dir())
    home_free = _disk_free(settings.home)
    warnings: list[str] = []
    if disk is not None and total_dl > disk:
        warnings.append(f"downloads need {human_bytes(total_dl)} but the Hugging Face cache disk has "
                        f"{human_bytes(disk)} free")
    if home_free is not None and work > home_free:
        warnings.append(f"run outputs need up to {human_bytes(work)} but {settings.home} has {human_bytes(home_free)} "
                        "free")
    if mem is not None:
        for r in results:
            need = r.peak_memory(cfg.finetune)
            if need > mem:
                where = "GPU memory" if device.startswith("cuda") else "RAM"
                warnings.append(f"{r.name}: needs up to {human_bytes(need)} of {where}, {human_bytes(mem)} available "
                                "(try LoRA, gradient_checkpointing, a smaller batch_size or seq_len)")
    return Preflight(cfg, device, w, results, total_dl, work, peak, mem, disk, warnings)


def _one(c: Candidate, cfg: PreflightConfig, w: int, device: str) -> CandidatePreflight:
    cap = c.capability
    assert cap is not None
    notes: list[str] = []
    d = _dims(c)
    if d is None:
        calib = full = lora = None
        notes.append("size facts unknown: memory not estimated (run `damoc registry check --online` or pull it)")
    else:
        calib, full, lora = estimate_memory(d, cfg, w, device, checkpoint_bytes=c.chat_facts.size_bytes)
    need_base = cfg.prune and c.base is not None
    download = 0
    est = False
    if cap.chat_path is None:
        download += c.chat_facts.estimated_size() or 0
        est = est or c.chat_facts.size_estimated or not c.chat_facts.size_bytes
    if need_base and cap.base_path is None and c.base_facts is not None:
        download += c.base_facts.estimated_size() or 0
        est = est or c.base_facts.size_estimated or not c.base_facts.size_bytes
    chat_size = (d.P * w // 2) if d else (c.chat_facts.estimated_size() or 0)   # proxies are saved in bf16
    adapter = (lora.trainable_parameters * 4) if lora else 0
    work = chat_size + (chat_size if cfg.finetune in ("full", "both") else 0) + (adapter if cfg.finetune != "full"
                                                                                 else 0)
    stages: list[StagePlan] = []
    if cap.chat_path is None:
        stages.append(StagePlan("download", "blocked", f"Chat not local: damoc registry pull {c.name}"))
        blocked = "waits for the download"
    else:
        blocked = ""
    if not cfg.prune:
        why = "pruning disabled in the run configuration"
        stages += [StagePlan("calibrate", "skip", why), StagePlan("prune", "skip", why)]
    elif cap.merge_supported:
        stages += [StagePlan("calibrate", "blocked" if blocked else "run", blocked),
                   StagePlan("prune", "blocked" if blocked else "run", blocked)]
    else:
        reason = cap.merge_reason
        if cap.state == "not_local" and c.base is not None:
            if cap.chat_path is None:
                reason = "needs the Chat and Base downloaded first"
                stages += [StagePlan("calibrate", "blocked", reason), StagePlan("prune", "blocked", reason)]
            else:
                reason = f"pruning skipped: Base (W_pre) not downloaded: damoc registry pull {c.name} --base-only"
                stages += [StagePlan("calibrate", "skip", reason), StagePlan("prune", "skip", reason)]
        else:
            stages += [StagePlan("calibrate", "skip", reason), StagePlan("prune", "skip", reason)]
    for st in ("finetune", "evaluate"):
        stages.append(StagePlan(st, "blocked" if blocked else "run", blocked))
    if c.needs_remote_code:
        notes.append("needs remote code (auto_map in config.json): trusted for this candidate by your opt-in"
                     if c.trust_remote_code else
                     "needs remote code (auto_map in config.json), not trusted: damoc loads it with the library's "
                     "own classes; opt in with `damoc registry add ... --trust-remote-code --replace`")
    if c.chat_facts.gated:
        notes.append("gated on the hub: accept the licence on the model page and log in before pulling")
    if c.notes:
        notes.append(c.notes)
    return CandidatePreflight(c.name, cap.chat_path is not None, int(download), bool(est and download), int(work),
                              calib, full, lora, stages, notes, c.chat_facts.origin)
