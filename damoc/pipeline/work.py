"""How much training a DaMoC run does against fine-tuning every candidate on the whole training set, before it runs.

Counted with the fine-tune module's own schedule rule (`plan_steps`): optimizer steps x effective batch x the share
of tokens token compression keeps. Pruning saves more (the layers it removes are not known before the run);
evaluation costs the same in both.
"""
from __future__ import annotations

from dataclasses import dataclass

from damoc.finetune.config import plan_steps
from damoc.pipeline.config import RunConfig

DEFAULT_MICRO_BATCH = 8          # the fine-tune module's micro batch when a section leaves it unset


@dataclass(frozen=True)
class TrainingWork:
    samples: int                 # training samples after the held-out split and max_train
    proxy_samples: int           # after the filter
    proxy_steps: int
    full_steps: int
    ratio: float                 # proxy work / full work (samples x steps x kept tokens)

    def describe(self) -> str:
        if self.ratio < 0.9:
            factor = f"≈{1 / self.ratio:.1f}x less"
        elif self.ratio <= 1.1:
            factor = "about the same: the proxy's minimum step count dominates on a set this small"
        else:
            factor = f"≈{self.ratio:.1f}x more: raise the sample count or lower finetune.proxy_min_steps"
        return (f"proxy training ≈ {self.ratio:.0%} of fine-tuning every candidate on all {self.samples} samples "
                f"({factor}; {self.proxy_steps} proxy steps on {self.proxy_samples} samples vs {self.full_steps}), "
                "before pruning")


def training_work(config: RunConfig, samples: int) -> TrainingWork | None:
    """The proxy's training work for a dataset of `samples` records; None outside --mode damoc (no proxies)."""
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

    def schedule(count: int, proxy: bool) -> tuple[int, int]:
        plan = plan_steps(count, config.finetune.to_config(method, proxy=proxy, seed=0, device="cpu"), micro)
        return plan.total_steps, plan.total_steps * plan.effective_batch

    proxy_steps, proxy_work = schedule(proxy_n, True)
    full_steps, full_work = schedule(n, False)
    return TrainingWork(n, proxy_n, proxy_steps, full_steps, proxy_work * keep / full_work)
