"""The leaderboard: cell results -> ranked rows. Pure (no I/O in `build_leaderboard`), so it is cheap to recompute
every time a cell finishes and easy to test against hand-computed values.

Score of a candidate = mean over seeds of its evaluation score for one fine-tuning method. With `--ft both` the row
carries both methods' scores, the ranking uses the better one, and `method` says which one won for that model
(paper sec. 5.4). `stderr` is the evaluation's standard error (mean over seeds). "Too close to call" marks the leader
and every row whose gap to it is within the seed-to-seed spread (max - min over seeds, the larger of the two rows')
when two or more seeds ran, else within `leaderboard.tolerance`. Equal scores are ordered by the evaluation's answer
log-likelihood (`TIEBREAK`); a rank is shared only when both are equal.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from damoc.errors import DamocError
from damoc.pipeline.cells import PrepareCell, PruneCell, kind_of, shared_kinds
from damoc.pipeline.cells.scoring import read_per_item
from damoc.pipeline.config import LeaderboardSection, SelectSection
from damoc.pipeline.rundir import DATA_CANDIDATE, RunDir

# Equal primary scores (common when tiny models all score 0 F1) are ordered by the teacher-forced answer
# log-likelihood, the low-noise secondary signal damoc.evaluate reports (zoo-spike.md, "Metric").
TIEBREAK = "answer_loglik"
STOPPED = "stopped"         # a candidate the adaptive budget stopped (select.adaptive)
SCORE_TOP = 100.0           # the built-in metrics are percent: a learning curve's error is SCORE_TOP - score


@dataclass
class Row:
    candidate: str
    rank: int | None = None
    score: float | None = None
    stderr: float | None = None
    gap: float | None = None
    method: str | None = None
    scores: dict[str, float] = field(default_factory=dict)            # method -> mean over seeds
    seed_scores: dict[str, list[float]] = field(default_factory=dict)  # method -> per-seed scores
    seed_spread: float | None = None
    layers_before: int | None = None
    layers_after: int | None = None
    pruned: list[int] = field(default_factory=list)
    merge: str = ""               # "applied (rule)" | "skipped: reason" | "" (no pruning in this mode)
    times: dict[str, float] = field(default_factory=dict)   # prune / finetune / evaluate seconds (summed over cells)
    status: str = "pending"       # pending | running | done | partial | failed | cancelled | interrupted
    reason: str = ""
    too_close: bool = False
    p_best: float | None = None   # P(this candidate is the true winner): paired bootstrap over the test items
    measured: float | None = None  # the proxy score on the largest subset (= score unless a curve predictor ran)
    predicted_low: float | None = None   # the predictor's interval for the full-data score (select.predictor)
    predicted_high: float | None = None
    curve: dict[str, list[list[float]]] = field(default_factory=dict)   # method -> [[train samples, score], ...]
    steps: int | None = None
    train_flops: float = 0.0      # 6·N·D summed over this candidate's fine-tunes (FinetuneResult.train_flops)
    tiebreak: float | None = None  # mean answer log-likelihood: orders rows whose primary scores are equal
    method_tiebreaks: dict[str, float] = field(default_factory=dict)

    def best_method(self) -> str:
        """The method with the higher score (equal scores: the higher answer log-likelihood)."""
        return max(self.scores, key=lambda m: (self.scores[m], self.method_tiebreaks.get(m, float("-inf"))))

    @property
    def layers(self) -> str:
        if self.layers_before is None:
            return ""
        return f"{len(self.pruned)}/{self.layers_before}"


@dataclass
class Leaderboard:
    run_id: str
    mode: str
    metric: str
    status: str
    rows: list[Row]
    shared_times: dict[str, float] = field(default_factory=dict)
    tolerance: float = 1.0
    seeds: int = 1
    methods: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def winner(self) -> str | None:
        return self.rows[0].candidate if self.rows and self.rows[0].rank == 1 else None

    @property
    def ranking(self) -> list[dict[str, Any]]:
        """The contract's ranking: [{name, score, rank}] of scored candidates, best first."""
        return [{"name": r.candidate, "score": r.score, "rank": r.rank} for r in self.rows if r.score is not None]

    @property
    def too_close_to_call(self) -> bool:
        return any(r.too_close for r in self.rows)

    def method_winners(self) -> dict[str, str]:
        """With `--ft both`: which fine-tuning method scores higher for which candidate."""
        return {r.candidate: r.best_method() for r in self.rows if len(r.scores) > 1}

    def train_seconds(self) -> float:
        return sum(r.times.get("finetune", 0.0) for r in self.rows)

    def train_flops(self) -> float:
        return sum(r.train_flops for r in self.rows)

    def total_stage_seconds(self) -> float:
        return sum(self.shared_times.values()) + sum(sum(r.times.values()) for r in self.rows)

    # -- exports ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "mode": self.mode, "metric": self.metric, "status": self.status,
                "winner": self.winner, "too_close_to_call": self.too_close_to_call, "tolerance": self.tolerance,
                "seeds": self.seeds, "methods": self.methods, "method_winners": self.method_winners(),
                "shared_times": self.shared_times, "train_seconds": self.train_seconds(),
                "train_flops": self.train_flops(), "note": self.note,
                "ranking": self.ranking, "rows": [{**asdict(r), "layers": r.layers} for r in self.rows]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    CSV_COLUMNS = ("rank", "candidate", "score", "stderr", "gap", "method", "layers_pruned", "merge",
                   "prune_s", "finetune_s", "evaluate_s", "status", "too_close", "reason", "p_best")

    def _flat(self, r: Row) -> dict[str, Any]:
        return {"rank": r.rank, "candidate": r.candidate, "score": _num(r.score), "stderr": _num(r.stderr),
                "gap": _num(r.gap), "method": r.method or "", "layers_pruned": r.layers, "merge": r.merge,
                "prune_s": _num(r.times.get("prune"), 1), "finetune_s": _num(r.times.get("finetune"), 1),
                "evaluate_s": _num(r.times.get("evaluate"), 1), "status": r.status,
                "too_close": "yes" if r.too_close else "", "reason": r.reason, "p_best": _num(r.p_best, 3)}

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(self.CSV_COLUMNS), lineterminator="\n")
        w.writeheader()
        for r in self.rows:
            w.writerow(self._flat(r))
        return buf.getvalue()

    def to_markdown(self) -> str:
        head = ["#", "candidate", f"score ({self.metric})", "gap", "method", "layers pruned", "merge",
                "prune s", "fine-tune s", "eval s", "status", "P(best)"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            f = self._flat(r)
            score = "" if r.score is None else f"{r.score:.4f}" + (f" ± {r.stderr:.4f}" if r.stderr is not None
                                                                     else "")
            if r.too_close:
                score += " (too close to call)"
            status = r.status + (f": {r.reason}" if r.reason else "")
            cells = [str(r.rank or ""), r.candidate, score, f["gap"], f["method"], f["layers_pruned"],
                     r.merge, f["prune_s"], f["finetune_s"], f["evaluate_s"], status, f["p_best"]]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        shared = ", ".join(f"{k} {v:.1f}s" for k, v in self.shared_times.items())
        foot = [f"\nrun {self.run_id} ({self.mode}, {self.status})" + (f"; shared stages: {shared}" if shared else "")]
        if self.too_close_to_call:
            foot.append("too close to call: " + self.note)
        mw = self.method_winners()
        if mw:
            foot.append("best fine-tuning method: " + ", ".join(f"{c} {m}" for c, m in mw.items()))
        return "\n".join(lines) + "\n" + "\n".join(foot) + "\n"


def _num(v: float | None, digits: int = 4) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def build_leaderboard(*, run_id: str, mode: str, candidates: list[str], methods: list[str], seeds: list[int],
                      cells: dict[str, dict[str, Any]], tolerance: float = 1.0, run_status: str = "finished",
                      candidate_errors: dict[str, str] | None = None, metric: str = "",
                      prune_skips: dict[str, str] | None = None,
                      per_item: dict[str, list[float]] | None = None,
                      rules: LeaderboardSection | None = None, select: SelectSection | None = None,
                      target: int | None = None) -> Leaderboard:
    """Rows from cell states and results.

    `cells` maps a cell key (`<candidate>/<stage>`) to {"state": done|failed|cancelled|skipped|running|pending,
    "result": done.json or failed.json content}. Only keys of planned cells should be present. `prune_skips` gives,
    per candidate, why pruning was not planned (shown in the merge column of a DaMoC run). `per_item` maps a cell
    key to its per-item scores (test-file order); with them for every scored row, rows carry P(best) and "too close
    to call" follows from it (`rules`: the run's leaderboard section), else from the gap rule of older runs.
    `select`: proxies on nested subsets make a learning curve per candidate; a curve predictor other than `final`
    ranks by its forecast at `target` training samples (the whole training set).
    """
    select = select or SelectSection()
    candidate_errors = candidate_errors or {}
    shared: dict[str, float] = {}
    for kind in shared_kinds():
        c = cells.get(f"{DATA_CANDIDATE}/{kind.name}")
        if c and c["state"] == "done":
            shared[kind.name] = float(c["result"].get("seconds") or 0.0)
    rows: list[Row] = []
    for name in candidates:
        row = Row(candidate=name)
        mine = {k.split("/", 1)[1]: v for k, v in cells.items() if k.split("/", 1)[0] == name}
        if name in candidate_errors:
            row.status, row.reason = "failed", candidate_errors[name]
            rows.append(row)
            continue
        prune = mine.get(PruneCell.name)
        if prune is not None and prune["state"] == "done":
            p = prune["result"]
            row.layers_before, row.layers_after = p.get("layers_before"), p.get("layers_after")
            row.pruned = list(p.get("pruned") or [])
            row.merge = (f"applied ({p['merge_rule']})" if p.get("merge_rule") else
                         f"skipped: {p.get('skip_reason') or 'no merge rule'}")
            row.times[PruneCell.name] = float(p.get("seconds") or 0.0)
        elif prune is None and mode == "damoc":
            row.merge = "skipped: " + (prune_skips or {}).get(name, "pruning not planned")
        stderrs: list[float] = []
        steps: list[int] = []
        tiebreaks: dict[str, list[float]] = {}
        points: dict[str, dict[int, list[float]]] = {}
        done = {stage: c["result"] for stage, c in mine.items()
                if c["state"] == "done" and kind_of(stage).scored and c["result"].get("score") is not None}
        largest = max((_subset(res) for res in done.values()), default=1.0)   # the measured share
        for stage, res in done.items():
            m = _method_of(res)
            row.times["finetune"] = row.times.get("finetune", 0.0) + float(res.get("train_seconds") or 0.0)
            row.train_flops += float(res.get("train_flops") or 0.0)
            row.times["evaluate"] = row.times.get("evaluate", 0.0) + float(res.get("eval_seconds") or 0.0)
            metric = metric or str(res.get("metric") or "")
            if res.get("train_samples"):
                points.setdefault(m, {}).setdefault(int(res["train_samples"]), []).append(float(res["score"]))
            if _subset(res) < largest:
                continue                       # a point of the learning curve, not the measured score
            row.seed_scores.setdefault(m, []).append(float(res["score"]))
            tb = (res.get("secondary") or {}).get(TIEBREAK)
            if tb is not None:
                tiebreaks.setdefault(m, []).append(float(tb))
            if res.get("stderr") is not None:
                stderrs.append(float(res["stderr"]))
            if res.get("steps"):
                steps.append(int(res["steps"]))
        row.curve = {m: [[n, _mean(v)] for n, v in sorted(pts.items())] for m, pts in points.items() if len(pts) > 1}
        row.scores = {m: _mean(v) for m, v in row.seed_scores.items()}
        row.method_tiebreaks = {m: _mean(v) for m, v in tiebreaks.items()}
        if row.scores:
            row.method = row.best_method()
            row.score = row.scores[row.method]
            best = row.seed_scores[row.method]
            row.seed_spread = (max(best) - min(best)) if len(best) > 1 else None
            row.stderr = _mean(stderrs) if stderrs else None
            row.tiebreak = row.method_tiebreaks.get(row.method)
            row.steps = max(steps) if steps else None
        states = [c["state"] for c in mine.values()]
        failed = [(k, c) for k, c in mine.items() if c["state"] in ("failed", "cancelled")]
        adaptive = next((c["result"] for c in mine.values()
                         if c["state"] == "skipped" and (c.get("result") or {}).get("adaptive")), None)
        if failed:
            k, c = failed[0]
            row.status = "failed" if c["state"] == "failed" else "cancelled"
            row.reason = f"{k}: {(c.get('result') or {}).get('reason', '')}".rstrip(": ")
            if row.score is not None and row.status == "failed":
                row.status = "partial"
        elif states and all(s == "done" for s in states):
            row.status = "done"
        elif adaptive and all(c["state"] == "done" or c["state"] == "skipped" for c in mine.values()):
            # the adaptive budget gave this candidate no larger proxy: stopped (out), or done (the run was decided)
            row.status = STOPPED if adaptive.get("adaptive") == "stop" else "done"
            row.reason = str(adaptive.get("reason", ""))
        elif any(s == "running" for s in states):
            row.status = "running" if run_status == "running" else "interrupted"
        elif any(s == "done" for s in states):
            row.status = "running" if run_status == "running" else "interrupted"
        else:
            row.status = {"running": "pending", "created": "pending", "failed": "not run"}.get(run_status,
                                                                                              "interrupted")
        if row.status == "done" and row.score is None:
            row.status, row.reason = "failed", "no score produced"
        rows.append(row)

    spread = _predict(rows, select.predictor, target) if select.predictor != "final" and target else {}
    for r in rows:                      # the ranked method's own proxy score (the forecast may have changed it)
        r.measured = _mean(r.seed_scores[r.method]) if r.method in r.seed_scores else None

    def key(r: Row) -> tuple[float, float]:
        return (r.score, r.tiebreak if r.tiebreak is not None else float("-inf"))  # type: ignore[return-value]

    # candidates the adaptive budget stopped rank below those it kept: their score is a smaller proxy's
    scored = sorted((r for r in rows if r.score is not None),
                    key=lambda r: (r.status == STOPPED, -key(r)[0], -key(r)[1], r.candidate))
    rest = sorted((r for r in rows if r.score is None), key=lambda r: r.candidate)
    for i, r in enumerate(scored):
        r.rank = scored[i - 1].rank if i and key(r) == key(scored[i - 1]) else i + 1
    note = ""
    rules = rules or LeaderboardSection(tolerance=tolerance)
    if scored:
        lead = scored[0]
        for r in scored:
            r.gap = lead.score - r.score  # type: ignore[operator]
        items = _row_items(scored, cells, per_item or {})
        if items is not None:
            note = _mark_by_p_best(scored, items, rules, spread)
        else:
            note = _mark_by_gap(scored, len(seeds) >= 2, tolerance)
    return Leaderboard(run_id=run_id, mode=mode, metric=metric, status=run_status, rows=scored + rest,
                       shared_times=shared, tolerance=tolerance, seeds=len(seeds), methods=list(methods), note=note)


def _subset(result: dict[str, Any]) -> float:
    return float(result.get("subset") or 1.0)


def _method_of(result: dict[str, Any]) -> str:
    """A scored cell's method: its fine-tune method, or the baseline an eval cell ran."""
    return result.get("method") or ("zero-shot" if not result.get("few_shot") else "few-shot")


def _row_items(rows: list[Row], cells: dict[str, dict[str, Any]], per_item: dict[str, list[float]]
               ) -> dict[str, list[float]] | None:
    """Each row's per-item scores for its ranked method on its measured (largest finished) share, mean over its
    seeds item by item; None unless every row has them, on the same number of items."""
    out: dict[str, list[float]] = {}
    for r in rows:
        mine = {k: (cells[k].get("result") or {}) for k in per_item
                if k.split("/", 1)[0] == r.candidate and cells.get(k, {}).get("state") == "done"
                and _method_of(cells[k].get("result") or {}) == r.method}
        if not mine:
            return None
        top = max(_subset(res) for res in mine.values())
        runs = [per_item[k] for k, res in mine.items() if _subset(res) == top]
        if len({len(v) for v in runs}) != 1:
            return None
        out[r.candidate] = [sum(col) / len(col) for col in zip(*runs)]
    return out if len({len(v) for v in out.values()}) == 1 else None


def _predict(rows: list[Row], predictor: str, target: int) -> dict[str, float]:
    """Rank by the predictor's forecast of the full-data score: each method's curves are fitted together (the
    damoc predictor pools its hyper-parameters over the candidates). Returns each forecast row's standard
    deviation (P(best) draws it); rows without a curve keep their measured score."""
    from statistics import NormalDist

    from damoc.curves import DEFAULT_LEVEL, Curve, get_predictor, predict

    pred = get_predictor(predictor)
    z = NormalDist().inv_cdf((1 + DEFAULT_LEVEL) / 2)
    interval: dict[tuple[str, str], tuple[float, float]] = {}
    for m in sorted({m for r in rows for m in r.curve}):
        usable = [r for r in rows if len(r.curve.get(m, [])) >= max(2, pred.min_points)]
        # scores are percent: errors (100 - score) are what the log-log fits model; a perfect score is kept just
        # below the top so that its error stays positive. Other scales (a log-likelihood) are not extrapolated.
        if not usable or any(v < 0 for r in usable for _, v in r.curve[m]):
            continue
        curves = [Curve(r.candidate, tuple(float(n) for n, _ in r.curve[m]),
                        tuple(min(float(v), SCORE_TOP - 1e-3) for _, v in r.curve[m])) for r in usable]
        horizon = float(max(target, max(c.sizes[-1] for c in curves)))
        try:
            forecast = predict(curves, horizon, pred, higher_is_better=True, ceiling=SCORE_TOP)
        except DamocError:              # curves this predictor cannot fit: the rows keep their measured scores
            continue
        for p in forecast:
            row = next(r for r in usable if r.candidate == p.name)
            row.scores[m] = p.predicted
            interval[(row.candidate, m)] = (p.low, p.high)
    spread: dict[str, float] = {}
    for r in rows:
        if not r.scores:
            continue
        r.method = r.best_method()
        r.score = r.scores[r.method]
        if (r.candidate, r.method) in interval:
            r.predicted_low, r.predicted_high = interval[(r.candidate, r.method)]
            spread[r.candidate] = (r.predicted_high - r.predicted_low) / (2 * z)
    return spread


def _mark_by_p_best(rows: list[Row], items: dict[str, list[float]], rules: LeaderboardSection,
                    spread: dict[str, float] | None = None) -> str:
    """P(best) of each row: a paired bootstrap of its measured per-item scores, moved to its predicted score and
    widened by the prediction's own uncertainty when a curve predictor ranked the rows."""
    from damoc.selection import p_best

    shift = {r.candidate: (r.score or 0.0) - (r.measured or 0.0) for r in rows if r.measured is not None}
    probs = p_best(items, resamples=rules.resamples, shift=shift, spread=spread or {})
    for r in rows:
        r.p_best = probs[r.candidate]
    lead = rows[0]
    if lead.p_best is not None and lead.p_best >= rules.p_decisive or len(rows) < 2:
        return ""
    for r in rows:
        if r is lead or (r.p_best or 0.0) >= rules.p_contender:
            r.too_close = lead.too_close = True
    return f"the leader's P(best) {lead.p_best:.2f} is below {rules.p_decisive:g}"


def _mark_by_gap(rows: list[Row], multi_seed: bool, tolerance: float) -> str:
    """Runs without per-item scores: within the seed-to-seed spread (two or more seeds) or the tolerance."""
    lead, note = rows[0], ""
    for r in rows[1:]:
        if multi_seed and lead.seed_spread is not None and r.seed_spread is not None:
            limit, why = max(lead.seed_spread, r.seed_spread), "seed-to-seed spread"
        else:
            limit, why = tolerance, f"tolerance {tolerance:g}"
        if r.gap is not None and r.gap <= limit + 1e-12:
            r.too_close = lead.too_close = True
            note = note or f"gap to the leader within the {why}"
    return note


def leaderboard_of(rd: RunDir, *, run_status: str | None = None) -> Leaderboard:
    """Read a run directory's plan and cell markers, then build the leaderboard (see `build_leaderboard`)."""
    from damoc.fsutil import read_json
    from damoc.pipeline.config import methods_of
    from damoc.pipeline.plan import Plan

    raw = read_json(rd.path / "plan.json", {}) or {}
    plan = Plan.from_dict(raw) if raw else None
    cfg = plan.config if plan is not None else (rd.config or {})
    cells: dict[str, dict[str, Any]] = {}
    per_item: dict[str, list[float]] = {}
    for spec in plan.cells if plan is not None else []:
        cell = rd.cell(spec.candidate, spec.stage)
        state = cell.state
        result = cell.result() if state == "done" else cell.failure()
        cells[spec.key] = {"state": state, "result": result or {}}
        items = read_per_item(cell.path) if state == "done" and kind_of(spec).scored else None
        if items is not None:
            per_item[spec.key] = items
    candidates = plan.candidates if plan is not None else []
    errors = {c.name: c.error for c in candidates if c.error}
    skips = {c.name: d.reason for c in candidates for d in c.stages if d.stage == PruneCell.name and not d.enabled}
    names = [c.name for c in candidates] or list(cfg.get("candidates", []))
    prep = cells.get(f"{DATA_CANDIDATE}/{PrepareCell.name}", {}).get("result") or {}
    methods = methods_of(cfg.get("ft", "full"))
    return build_leaderboard(run_id=rd.run_id, mode=cfg.get("mode", plan.mode if plan is not None else "damoc"),
                             candidates=names, methods=methods, seeds=list(cfg.get("seeds", [0])), cells=cells,
                             tolerance=float((cfg.get("leaderboard") or {}).get("tolerance", 1.0)),
                             run_status=run_status or rd.status(), candidate_errors=errors,
                             metric=str(prep.get("metric", "")), prune_skips=skips, per_item=per_item,
                             rules=LeaderboardSection.model_validate(cfg.get("leaderboard") or {}),
                             select=SelectSection.model_validate(cfg.get("select") or {}),
                             target=int(prep["n_train"]) if prep.get("n_train") else None)
