"""How much a DaMoC run costs against fine-tuning every candidate on the whole training set, before it runs: the
training work, and with this machine's measured throughput (`damoc.registry.throughput`) and the registry's sizes,
the wall time of each.

Training is counted with the fine-tune module's own schedule rule (`plan_steps`): optimizer steps x effective batch
x tokens per sample (x the share token compression keeps, for the proxies). Seconds per optimizer step follow
`Throughput.train_seconds` (a fixed cost per step + 6·P·tokens at the measured training FLOP rate). Evaluation
(greedy generation on the test set, then a log-likelihood pass) costs the same in both arms; the DaMoC run also
scores the training set once when it compresses it and scores calibration texts when it prunes. Pruning saves more
(the layers it removes are not known before the run): the estimate is for the un-pruned candidates.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from damoc.finetune.config import plan_steps
from damoc.pipeline.config import RunConfig
from damoc.units import fmt_duration

DEFAULT_MICRO_BATCH = 8          # the fine-tune module's micro batch when a section leaves it unset
SMALL_DATA_RATIO = 0.5           # proxies costing more than this share of the full fine-tunes: "small data"
TOKEN_SAMPLE = 200               # samples tokenised to measure the dataset's tokens per sample
PROBE_ENV = "DAMOC_THROUGHPUT_PROBE"   # "1" / "0": always / never probe when nothing is cached


def probe_wanted(default: bool) -> bool:
    """Whether a plan may run the throughput probe when nothing is cached: `default` (a dry run: yes, the user is
    sizing a run; a plan on the way to a run or in the app: no), unless DAMOC_THROUGHPUT_PROBE says otherwise."""
    v = os.environ.get(PROBE_ENV)
    return default if v is None else v == "1"


@dataclass(frozen=True)
class TimeEstimate:
    """Seconds, summed over candidates, methods and seeds."""

    damoc_seconds: float         # data stages + pruning + proxy training + evaluation
    full_seconds: float          # fine-tuning every candidate on the whole set + evaluation
    proxy_train_seconds: float
    full_train_seconds: float
    eval_seconds: float          # in each arm
    data_seconds: float          # compression's scoring pass + pruning's calibration
    tokens_per_sample: float
    basis: str                   # what the throughput figures are

    @property
    def ratio(self) -> float:
        return self.damoc_seconds / self.full_seconds if self.full_seconds > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"ratio": self.ratio}


@dataclass(frozen=True)
class TrainingWork:
    samples: int                 # training samples after the held-out split and max_train
    proxy_samples: int           # after the filter
    proxy_steps: int
    full_steps: int
    ratio: float                 # proxy work / full work (samples x steps x kept tokens)
    time: TimeEstimate | None = None
    time_note: str = ""          # why there is no wall time
    notes: list[str] = field(default_factory=list)
    adaptive: bool = False       # proxy figures are the adaptive budget's most: a decided run stops sooner

    @property
    def small_data(self) -> bool:
        """The proxies cost close to the full fine-tunes: the dataset is too small for DaMoC to save much."""
        r = self.time.ratio if self.time is not None else self.ratio
        return r >= SMALL_DATA_RATIO

    def describe(self) -> str:
        steps = (f"{'at most ' if self.adaptive else ''}{self.proxy_steps} proxy steps on {self.proxy_samples} "
                 f"filtered samples vs {self.full_steps} steps on all {self.samples}")
        if self.time is not None:
            t = self.time
            text = (f"DaMoC run ≈ {fmt_duration(t.damoc_seconds)}, fine-tuning every candidate ≈ "
                    f"{fmt_duration(t.full_seconds)}: {_factor(t.ratio)} ({steps}; training "
                    f"{fmt_duration(t.proxy_train_seconds)} vs {fmt_duration(t.full_train_seconds)}, evaluation "
                    f"{fmt_duration(t.eval_seconds)} in each; {t.basis}; before pruning)")
        else:
            text = f"proxy training: {_factor(self.ratio)} than fine-tuning every candidate ({steps}; before pruning)"
            if self.time_note:
                text += f"; no wall time: {self.time_note}"
        if self.small_data:
            text += (". The dataset is so small that the proxies cost close to fine-tuning every candidate (the "
                     "proxy's step floor dominates): fine-tune them all instead (--mode ground-truth), or lower "
                     "finetune.proxy_min_steps")
        return text


def _factor(ratio: float) -> str:
    if ratio <= 0:
        return "no cost"
    if ratio < 0.9:
        return f"≈{1 / ratio:.1f}x less"
    if ratio <= 1.1:
        return "about the same"
    return f"≈{ratio:.1f}x more"


def proxy_schedules(config: RunConfig, proxy_n: int, schedule_of: Any) -> list[tuple[int, int, int]]:
    """(steps, effective batch, accumulation) of each proxy a candidate trains, at most: one per share of the
    filtered set (`select.sizes`); under `select.adaptive` the first round, then each next share while the steps
    stay within `select.budget` x today's recipe (one proxy on the whole filtered set), the driver's own cap
    (damoc.pipeline.adaptive.decide). `schedule_of(samples)` is the fine-tune's schedule for that many samples."""
    sel = config.select
    plans = [schedule_of(max(1, round(share * proxy_n))) for share in sel.sizes]
    if not (sel.adaptive and len(plans) > 1):
        return plans
    cap = sel.budget * schedule_of(proxy_n)[0]
    kept, spent = plans[:1], plans[0][0]
    for plan in plans[1:]:
        if spent + plan[0] > cap:
            break
        kept.append(plan)
        spent += plan[0]
    return kept


def training_work(config: RunConfig, samples: int, *, settings: Any = None,
                  probe: bool | None = None) -> TrainingWork | None:
    """The proxy's training work for a dataset of `samples` records, with wall times when this machine's throughput
    is measured: cached in the data dir, or with `probe` measured now (a few seconds in a subprocess, then cached;
    default: `probe_wanted(False)`). None outside --mode damoc (no proxies)."""
    if config.mode != "damoc" or samples < 1:
        return None
    ds = config.dataset
    n = min(samples, ds.max_train) if ds.max_train else samples
    if not ds.test:
        n = max(1, round(n * (1 - ds.test_fraction)))
    f = config.filter
    proxy_n = n if not f.enabled else (min(n, f.count) if f.count else max(1, round(n * f.ratio)))
    keep = config.compress.rate if config.compress.enabled else 1.0
    method = config.methods[0]
    micro = config.finetune.method(method).micro_batch or DEFAULT_MICRO_BATCH

    def schedule(count: int, proxy: bool, m: str = method) -> tuple[int, int, int]:
        plan = plan_steps(count, config.finetune.to_config(m, proxy=proxy, seed=0, device="cpu"), micro)
        return plan.total_steps, plan.effective_batch, plan.accumulation

    proxies = proxy_schedules(config, proxy_n, lambda k: schedule(k, True))
    proxy_steps = sum(steps for steps, _, _ in proxies)
    full_steps, full_eff, _ = schedule(n, False)
    ratio = sum(steps * eff for steps, eff, _ in proxies) * keep / (full_steps * full_eff)
    time, note = None, ""
    try:
        time, note = _time(config, samples, n, proxy_n, keep, schedule, settings, probe)
    except Exception as e:  # an estimate never stops a plan
        note = f"the estimate failed ({type(e).__name__}: {e})"
    adaptive = config.select.adaptive and len(config.select.sizes) > 1
    return TrainingWork(n, proxy_n, proxy_steps, full_steps, ratio, time, note, adaptive=adaptive)


def _time(config: RunConfig, samples: int, n: int, proxy_n: int, keep: float, schedule: Any, settings: Any,
          probe: bool | None) -> tuple[TimeEstimate | None, str]:
    from damoc.registry.throughput import throughput
    from damoc.settings import Settings

    settings = settings or Settings.load()
    device = "cuda" if str(config.device).startswith("cuda") else "cpu"
    if config.device in ("", "auto"):
        from damoc.registry.preflight import _gpu_memory
        device = "cuda" if _gpu_memory() else "cpu"
    if probe is None:
        probe = probe_wanted(False)
    sizes = _sizes(settings, config.candidates)
    if not sizes:
        return None, "no candidate's size is known (pull it or run `damoc registry check --online`)"
    tp = throughput(settings, device, probe=probe)
    if tp is None:
        return None, ("this machine's throughput is not measured yet (python -m damoc.registry.throughput "
                      f"{device}: a few seconds, cached)" if not probe else "the throughput probe could not run")
    tok = _tokens_per_sample(config, sizes)
    ds = config.dataset
    n_test = max(1, round(samples * ds.test_fraction)) if not ds.test else _count(ds.test)
    if ds.max_test:
        n_test = min(n_test, ds.max_test)
    cells = len(config.methods) * len(config.seeds)
    proxy_train = full_train = evaluation = data = 0.0
    for P, has_base, tok_c in sizes.values():
        tok_c = tok_c or tok
        for m in config.methods:
            for ps, pe, pa in proxy_schedules(config, proxy_n, lambda k: schedule(k, True, m)):
                proxy_train += len(config.seeds) * tp.train_seconds(P, pe * tok_c * keep, ps, pa)
            fs, fe, fa = schedule(n, False, m)
            full_train += len(config.seeds) * tp.train_seconds(P, fe * tok_c, fs, fa)
        new_tokens = 32
        evaluation += cells * (tp.generate_seconds(P, n_test, tok_c, new_tokens, 16)
                               + tp.forward_seconds(P, n_test * tok_c, max(1, n_test // 16)))
        if config.prune.enabled and has_base:
            calib = config.prune.calib_samples
            data += tp.forward_seconds(P, calib * tok_c, max(1, calib // 8))
    if config.compress.enabled and sizes:
        P_small = min(p for p, _, _ in sizes.values())
        data += tp.forward_seconds(P_small, n * tok, max(1, n // 16))
    basis = (f"this machine's {tp.device} throughput (probe: {tp.train_flops / 1e9:.0f} GFLOP/s training, "
             f"{tp.step_seconds * 1e3:.0f} ms per step)")
    return TimeEstimate(damoc_seconds=data + proxy_train + evaluation, full_seconds=full_train + evaluation,
                        proxy_train_seconds=proxy_train, full_train_seconds=full_train, eval_seconds=evaluation,
                        data_seconds=data, tokens_per_sample=tok, basis=basis), ""


def _sizes(settings: Any, names: list[str]) -> dict[str, tuple[float, bool, float | None]]:
    """name -> (parameters, has a Base, tokens per sample with its tokenizer or None) for registry candidates."""
    from damoc.registry.store import RegistryStore

    store = RegistryStore(settings)
    out: dict[str, tuple[float, bool, float | None]] = {}
    for name in names:
        try:
            c = store.find(name)
        except Exception:
            continue
        P = c.parameters
        if P:
            out[name] = (float(P), c.base is not None, None)
    return out


def _tokenizer_file(settings: Any, name: str) -> Path | None:
    from damoc.registry.resolve import resolve_candidate

    try:
        path = Path(resolve_candidate(settings, name).chat_path)
    except Exception:
        return None
    f = path / "tokenizer.json"
    return f if f.is_file() else None


def _tokens_per_sample(config: RunConfig, sizes: dict[str, Any]) -> float:
    """Mean tokens of prompt + answer over the first samples, with the first local candidate's tokenizer (the
    `tokenizers` library: no torch); ~4 characters a token when none is at hand."""
    from damoc.data.io import load_samples

    res = load_samples(config.dataset.train, skip_bad=True, limit=TOKEN_SAMPLE, allow_empty=True)
    texts = [f"{s.prompt}\n{s.answer}" for s in res.samples]
    if not texts:
        return 64.0
    from damoc.settings import Settings

    settings = Settings.load()
    for name in sizes:
        f = _tokenizer_file(settings, name)
        if f is None:
            continue
        try:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(f))
            return sum(len(e.ids) for e in tok.encode_batch(texts)) / len(texts) + 8   # + the prompt frame
        except Exception:
            continue
    return sum(len(t) for t in texts) / len(texts) / 4 + 8


def _count(path: str) -> int:
    from damoc.data.io import load_samples

    return max(1, len(load_samples(path, skip_bad=True, allow_empty=True).samples))
