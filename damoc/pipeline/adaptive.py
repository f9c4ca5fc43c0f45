"""Adaptive budget (`select.adaptive`): spend proxy training only where the pick is undecided.

Successive halving over the proxy sizes (Jamieson & Talwalkar, "Non-stochastic best arm identification and
hyperparameter optimization", AISTATS 2016, is the scheme; the stopping rule here is a probability instead of a
fixed halving): every candidate gets the smallest share of the filtered set first; after each round a candidate whose
P(best) fell below `select.p_drop` stops, the others get the next share; the run stops as soon as the leader's
P(best) reaches `leaderboard.p_decisive`, or when the next round would spend more optimizer steps than
`select.budget` times today's recipe (one proxy per candidate on the largest share).

The decisions are a pure function of the finished cells (P(best) is a seeded bootstrap), so a resumed run takes the
same ones again and never redoes a finished cell.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from damoc.pipeline.cells import CellSpec, FinetuneCell
from damoc.pipeline.cells.scoring import FinetuneCellParams, subset_of
from damoc.pipeline.config import LeaderboardSection, SelectSection
from damoc.pipeline.leaderboard import Leaderboard
from damoc.pipeline.plan import Plan



STOP, DECIDED = "stop", "decided"     # why an adaptive skip marker was written (failed.json `adaptive`)


@dataclass(frozen=True)
class Decision:
    stop: dict[str, str] = field(default_factory=dict)   # candidate -> why it gets no larger proxy
    done: str = ""                                      # non-empty: why the run stops after this round


def proxy_steps(spec: CellSpec, n_train: int) -> int:
    """Optimizer steps the proxy of `spec` takes on its share of `n_train` training samples (the step rule of
    damoc.finetune, proxy floor included)."""
    from damoc.finetune.config import plan_steps

    p = FinetuneCellParams.model_validate(spec.params)
    cfg = p.hp.to_config(spec.method or "full", min_steps=p.min_steps)
    return plan_steps(max(1, round(p.subset * n_train)), cfg, 1).total_steps


def round_cost(plan: Plan, names: list[str], share: float, n_train: int) -> int:
    """Steps of the proxies of `names` on `share`."""
    return sum(proxy_steps(c, n_train) for n in names for c in plan.cells_of(n)
               if c.kind == FinetuneCell.name and subset_of(c) == share)


def decide(lb: Leaderboard, alive: list[str], *, share: float, select: SelectSection, rules: LeaderboardSection,
           spent: int, next_cost: Callable[[list[str]], int], cap: int) -> Decision:
    """What the round that trained the proxies on `share` decides for the candidates still in the race."""
    rows = [r for r in lb.rows if r.candidate in alive and r.score is not None]
    if not rows:
        return Decision(done="no candidate produced a score")
    lead = rows[0]
    if lead.p_best is not None and lead.p_best >= rules.p_decisive:
        return Decision(done=f"decided after share {share:g}: {lead.candidate} has P(best) {lead.p_best:.2f} "
                             f">= leaderboard.p_decisive {rules.p_decisive:g}")
    stop = {r.candidate: f"stopped after share {share:g}: P(best) {r.p_best:.3f} < select.p_drop {select.p_drop:g}"
            for r in rows[1:] if r.p_best is not None and r.p_best < select.p_drop}
    left = [n for n in alive if n not in stop]
    if len(left) <= 1:
        return Decision(stop, f"decided after share {share:g}: every other candidate stopped")
    if spent + next_cost(left) > cap:
        return Decision(stop, f"budget spent after share {share:g}: {spent} proxy steps of {cap} "
                              f"(select.budget {select.budget:g} x today's recipe)")
    return Decision(stop)
