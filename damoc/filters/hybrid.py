"""Hybrid methods: MoDS, Cherry, Deita, CaR (algorithms.md section 6).

Each mixes a quality signal from a model with a diversity step on embeddings. The papers' dedicated scorers (MoDS's
DeBERTa reward model, Deita's complexity/quality scorers, CaR's IQS regressor) are not reachable offline; the scorer
is a choice: a dedicated model folder when the user has one (params `quality_scorer`, `complexity_scorer`), else the
`--scorer` LM prompted as a judge and read out by its digit probabilities. docs/filters.md lists the substitutes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from damoc.errors import ConfigError
from damoc.filters.base import FilterContext, FilterMethod, MethodParams, Scored
from damoc.filters.quality import _instruction_and_input


def quality_scores(ctx: FilterContext, path: str, samples: list[Any], answers: list[str] | None = None, *,
                   stage: str = "quality") -> tuple[Any, str]:
    """Quality of (instruction, answer) pairs: a reward model's logit when `path` is a sequence classifier (MoDS's
    reward-model-deberta-v3-large-v2 and the like), else the AlpaGasus judge prompt's expected 0-5 score from the
    LM's digit probabilities."""
    import numpy as np

    from damoc.filters import judge, lm as L

    answers = [s.answer for s in samples] if answers is None else answers
    tr = ctx.tracker(stage).start(len(samples))
    if L.is_reward_model(path):
        vals = L.reward_scores(path, ctx.settings, [s.prompt for s in samples], answers, tracker=tr)
        tr.finish("ok")
        return np.asarray(vals, dtype=np.float64), "reward"
    lm = L.ScorerLM(path, ctx.settings)
    prompts = []
    for s, a in zip(samples, answers):
        instr, inp = _instruction_and_input(s)
        prompts.append(lm.frame(judge.alpagasus_prompt(instr, inp, a), system=judge.ALPAGASUS_SYSTEM))
    ex = L.digit_expectations(lm, prompts, range(6), tracker=tr, cache_kind="judge-digits")
    lm.close()
    tr.finish("ok")
    return np.asarray([e for e, _ in ex], dtype=np.float64), "judge expected score (0-5)"


# ---------------------------------------------------------------------------------------------------------------
@dataclass
class MoDSParams(MethodParams):
    quality_threshold: float | None = None
    """Keep samples with quality > threshold (MoDS: reward > 0). None: keep the top `quality_keep` share."""
    quality_keep: float = 0.5
    """Share of the pool kept as high quality when no threshold is set."""
    quality_scorer: str = ""
    """A reward-model folder (sequence classifier); '' = --scorer prompted as a judge."""
    seed_fraction: float = 0.5
    """Share of the budget chosen by K-Center greedy as the seed set; the rest by necessity."""
    necessity: bool = True
    """Run the necessity step (tune on the seeds, keep what the tuned model still answers badly)."""
    tune_epochs: int = 1
    """LoRA epochs on the seed set (MoDS: 3 epochs of full fine-tuning)."""
    lr: float = 1e-4
    """LoRA learning rate of the seed tuning."""
    max_new_tokens: int = 48
    """Length of the tuned model's answers in the necessity step."""

    def validate(self) -> None:
        if not 0 < self.quality_keep <= 1 or not 0 < self.seed_fraction <= 1:
            raise ConfigError("mods: quality_keep and seed_fraction must be in (0, 1]")


class MoDS(FilterMethod, name="mods"):
    Params = MoDSParams
    needs_answers = True
    needs_scorer = True
    uses_embeddings = True
    reference = ("Du et al. 2023 (CASIA-LM/MoDS quality-evaluation, diverse-data-selection, necessity-evaluation): "
                 "reward > 0, KCenterGreedy seeds on instruction embeddings, necessity = low reward of the seed-"
                 "tuned model's answers; final = seeds + necessity")

    def score(self, ctx: FilterContext, budget: int) -> Scored:
        import numpy as np

        from damoc.filters import lm as L, warmup as W
        from damoc.filters.greedy import kcenter_greedy

        p = self.params
        scorer = ctx.need_scorer(self.name)
        qpath = p.quality_scorer or scorer
        q, qlabel = quality_scores(ctx, qpath, ctx.samples)
        ranked = self.ranked(q, seed=ctx.seed)
        if p.quality_threshold is not None:
            hq = [i for i in ranked if q[i] > p.quality_threshold]
            rule = f"{qlabel} > {p.quality_threshold:g}"
        else:
            hq = ranked[:max(1, math.ceil(p.quality_keep * ctx.n))]
            rule = f"top {p.quality_keep:.0%} by {qlabel}"
        if len(hq) < budget:
            ctx.log(f"mods: {len(hq)} high-quality samples < budget {budget}; widening the pool by quality", "warning")
            hq = ranked[:budget]
        hq_set = set(hq)
        n_seed = max(1, min(budget, round(p.seed_fraction * budget)))
        E = ctx.embeddings("prompt")[hq]                  # MoDS embeds the instruction only
        tr = ctx.tracker("mods-seeds").start(n_seed)
        if not p.necessity:
            n_seed = budget
        kc = kcenter_greedy(E, n_seed, seed=ctx.seed, device=ctx.device(), tracker=tr)
        tr.finish("ok")
        seeds = [hq[int(j)] for j in kc.order]
        nec_score: dict[int, float] = {}
        necessary: list[int] = []
        if p.necessity and budget > len(seeds):
            tr = ctx.tracker("mods-tune").start(None)
            run = W.lora_train(scorer, [ctx.samples[i] for i in seeds],
                               W.LoraConfigLite(lr=p.lr, epochs=p.tune_epochs), settings=ctx.settings,
                               seed=ctx.seed, tracker=tr)
            tr.finish("ok", steps=run.steps)
            rest = [i for i in hq if i not in set(seeds)]
            tuned = L.ScorerLM(scorer, ctx.settings, model=run.model, tokenizer=run.tokenizer)
            tr = ctx.tracker("mods-generate").start(len(rest))
            gen = L.generate(tuned, [tuned.frame(ctx.samples[i].prompt) for i in rest],
                             max_new_tokens=p.max_new_tokens, tracker=tr)
            tr.finish("ok")
            tuned.close()
            gq, _ = quality_scores(ctx, qpath, [ctx.samples[i] for i in rest], gen, stage="mods-necessity")
            nec_score = {i: float(v) for i, v in zip(rest, gq)}
            # necessity: the instructions the seed-tuned model answers worst (lowest quality first)
            necessary = [rest[int(j)] for j in np.lexsort((np.arange(len(rest)), gq))][:budget - len(seeds)]
        order = seeds + necessary
        seed_rank = {i: r for r, i in enumerate(seeds)}

        def kept(i: int, r: int) -> str:
            if i in seed_rank:
                return f"seed {seed_rank[i] + 1}: K-Center pick in the high-quality pool ({qlabel} {q[i]:.3g})"
            return (f"necessary: the seed-tuned model's answer scored {nec_score[i]:.3g} "
                    f"(sample {qlabel} {q[i]:.3g})")

        def dropped(i: int, o: list[int]) -> str:
            if i not in hq_set:
                return f"low quality: {qlabel} {q[i]:.3g} fails {rule}"
            if i in nec_score:
                return f"high quality, but the seed-tuned model already answers it well ({nec_score[i]:.3g})"
            return "high quality, not chosen as a seed"

        def picker(scored: Scored, k: int) -> list[int]:
            if k == budget:
                return order
            again = self.score(ctx, k)           # seeds and necessity both depend on the budget
            scored.__dict__.update(again.__dict__)
            return again.picker(again, k) if again.picker else again.order

        return Scored(self.name, q, order, np.array([i in hq_set for i in range(ctx.n)]), score_name="quality",
                      kept_reason=kept, drop_reason=dropped, picker=picker,
                      details={"quality": qlabel, "high_quality": len(hq), "seeds": len(seeds),
                               "necessary": len(necessary), "rule": rule,
                               "seed_ids": [ctx.samples[i].id for i in seeds]})


# ---------------------------------------------------------------------------------------------------------------
@dataclass
class CherryParams(MethodParams):
    clusters: int = 100
    """K-Means clusters of the pre-experience step (the paper: 100)."""
    per_cluster: int = 10
    """Samples taken per cluster, evenly strided among its middle perplexities (the paper: 10)."""
    pre_fraction: float = 0.05
    """Cap of the pre-experience set as a share of the pool (the paper's ~1k of 52k is 2%)."""
    pre_epochs: int = 1
    """Epochs of the brief pre-experience tuning (LoRA here)."""
    lr: float = 1e-4
    """LoRA learning rate of the pre-experience tuning."""
    threshold: float = 1.0
    """Drop samples with IFD > threshold (Cherry: 1)."""
    fill: bool = False
    """When fewer samples than the budget pass, top up with the next best."""


class Cherry(FilterMethod, name="cherry"):
    Params = CherryParams
    needs_answers = True
    needs_scorer = True
    reference = ("Li et al. NAACL 2024 (tianyi-lab/Cherry_LLM data_analysis.py, data_by_cluster.py, data_by_IFD.py):"
                 " K-Means on mean hidden states of the instructions, middle-perplexity picks per cluster, brief "
                 "tuning, IFD = L(A|Q) / L(A) (ratio of mean losses)")

    def score(self, ctx: FilterContext, budget: int) -> Scored:
        import numpy as np
        from sklearn.cluster import KMeans

        from damoc.filters import lm as L, warmup as W

        p = self.params
        path = ctx.need_scorer(self.name)
        base = L.ScorerLM(path, ctx.settings)
        tr = ctx.tracker("cherry-embed").start(ctx.n)
        H, ppl = L.mean_hidden_and_ppl(base, [base.frame(s.prompt) for s in ctx.samples], tracker=tr)
        tr.finish("ok")
        base.close()
        k = max(1, min(p.clusters, ctx.n, math.floor(p.pre_fraction * ctx.n / max(1, p.per_cluster)) or 1))
        labels = KMeans(n_clusters=k, random_state=ctx.seed, n_init=10).fit_predict(H)
        pre: list[int] = []
        for c in range(k):
            members = np.flatnonzero(labels == c)
            lo, hi = np.percentile(ppl[members], [25, 75])
            mid = [int(i) for i in members if lo <= ppl[i] <= hi] or [int(i) for i in members]
            step = max(1, len(mid) // p.per_cluster)
            pre += mid[::step][:p.per_cluster]
        tr = ctx.tracker("cherry-pre-experience").start(None)
        run = W.lora_train(path, [ctx.samples[i] for i in pre], W.LoraConfigLite(lr=p.lr, epochs=p.pre_epochs),
                           settings=ctx.settings, seed=ctx.seed, tracker=tr)
        tr.finish("ok", steps=run.steps)
        tuned = L.ScorerLM(path, ctx.settings, model=run.model, tokenizer=run.tokenizer)
        tr = ctx.tracker("cherry-ifd").start(ctx.n)
        losses = L.answer_losses(tuned, ctx.samples, tracker=tr, cache=False)
        tr.finish("ok")
        tuned.close()
        ifd = np.array([L.ifd_cherry(x) for x in losses])
        eligible = np.isfinite(ifd) & (ifd <= p.threshold)
        reasons = {i: ("no IFD: the answer has no scorable tokens" if not np.isfinite(ifd[i]) else
                       f"IFD {ifd[i]:.4g} > {p.threshold:g}: the instruction does not help, dropped")
                   for i in range(ctx.n) if not eligible[i]}
        order = self.ranked(ifd, eligible, seed=ctx.seed)
        pre_set = set(pre)
        return Scored(self.name, ifd, order, eligible, score_name="ifd", reasons=reasons, fill=p.fill,
                      kept_reason=lambda i, r: (f"IFD {ifd[i]:.4g} (pre-experienced model), rank {r + 1}"
                                                + (", also in the pre-experience set" if i in pre_set else "")),
                      details={"ifd": "L(A|Q) / L(A) (Cherry: ratio of mean losses)", "clusters": k,
                               "pre_experience": [ctx.samples[i].id for i in pre], "eligible": int(eligible.sum()),
                               "cluster_of": {ctx.samples[i].id: int(labels[i]) for i in pre}})


# ---------------------------------------------------------------------------------------------------------------
@dataclass
class DeitaParams(MethodParams):
    tau: float = 0.9
    """A sample is skipped when its cosine similarity to an already kept one exceeds tau (the paper: 0.9)."""
    complexity_scorer: str = ""
    """hkust-nlp/deita-complexity-scorer folder if you have it ('' = --scorer prompted with Deita's prompt)."""
    quality_scorer: str = ""
    """hkust-nlp/deita-quality-scorer folder if you have it ('' = --scorer)."""
    fill: bool = False
    """When the similarity filter leaves fewer than the budget, top up with the best skipped ones."""

    def validate(self) -> None:
        if not -1 <= self.tau <= 1:
            raise ConfigError(f"deita: tau is a cosine similarity in [-1, 1], got {self.tau}")


class Deita(FilterMethod, name="deita"):
    Params = DeitaParams
    needs_answers = True
    needs_scorer = True
    uses_embeddings = True
    reference = ("Liu et al. ICLR 2024 (hkust-nlp/deita scorer/llama_scorer.py, filter/combined_filter.py): "
                 "score = sum_k k softmax over '1'..'6', evol score = complexity x quality, repr filter tau 0.9")

    def score(self, ctx: FilterContext, budget: int) -> Scored:
        import numpy as np

        from damoc.filters import judge, lm as L

        p = self.params
        scorer = ctx.need_scorer(self.name)

        def rate(path: str, dedicated: bool, texts: list[str], stage: str) -> Any:
            lm = L.ScorerLM(path, ctx.settings)
            # the dedicated scorers were trained on the raw prompt; a general LM gets it as a user turn
            prompts = texts if dedicated else [lm.frame(t) for t in texts]
            tr = ctx.tracker(stage).start(len(texts))
            ex = L.digit_expectations(lm, prompts, range(1, 7), tracker=tr, cache_kind=f"deita-{stage}")
            tr.finish("ok")
            lm.close()
            return np.asarray([e for e, _ in ex])

        pairs = [_instruction_and_input(s) for s in ctx.samples]
        instr = [f"{a}\n{b}".strip() for a, b in pairs]
        comp = rate(p.complexity_scorer or scorer, bool(p.complexity_scorer),
                    [judge.DEITA_COMPLEXITY.format(instruction=t) for t in instr], "complexity")
        qual = rate(p.quality_scorer or scorer, bool(p.quality_scorer),
                    [judge.DEITA_QUALITY.format(instruction=t, output=s.answer) for t, s in zip(instr, ctx.samples)],
                    "quality")
        evol = comp * qual
        ranked = self.ranked(evol, seed=ctx.seed)
        E = ctx.embeddings("sample")
        accepted, rejected = _repr_filter(E, ranked, budget, p.tau)
        reasons = {i: f"too similar to kept sample {ctx.samples[j].id} (cosine {s:.3f} > {p.tau:g})"
                   for i, (j, s) in rejected.items()}
        eligible = np.ones(ctx.n, dtype=bool)
        for i in rejected:
            eligible[i] = False
        done = len(accepted) >= budget and budget < ctx.n
        return Scored(self.name, evol, accepted, eligible, score_name="evol_score", reasons=reasons, fill=p.fill,
                      kept_reason=lambda i, r: (f"complexity {comp[i]:.3g} x quality {qual[i]:.3g} = {evol[i]:.3g}, "
                                                f"rank {r + 1} after the similarity filter"),
                      drop_reason=lambda i, o: reasons.get(i) or f"evol score {evol[i]:.3g}: below the kept ones",
                      complete=not done, extend=lambda b: self.score(ctx, b),
                      details={"tau": p.tau, "skipped_as_similar": len(rejected),
                               "scorers": {"complexity": p.complexity_scorer or scorer,
                                           "quality": p.quality_scorer or scorer}})


def _repr_filter(E: Any, ranked: list[int], budget: int, tau: float) -> tuple[list[int], dict[int, tuple[int, float]]]:
    """Deita's iterative filter: walk by score, accept a sample iff its max cosine to the accepted ones is <= tau,
    until `budget` are accepted. Memory O(budget x d)."""
    import numpy as np

    d = E.shape[1]
    A = np.empty((min(budget, len(ranked)), d), dtype=np.float32)
    accepted: list[int] = []
    rejected: dict[int, tuple[int, float]] = {}
    for i in ranked:
        if len(accepted) >= budget:
            break
        if accepted:
            sims = A[:len(accepted)] @ E[i]
            j = int(np.argmax(sims))
            if sims[j] > tau:
                rejected[i] = (accepted[j], float(sims[j]))
                continue
        A[len(accepted)] = E[i]
        accepted.append(i)
    return accepted, rejected


# ---------------------------------------------------------------------------------------------------------------
@dataclass
class CaRParams(MethodParams):
    per_cluster: int = 1
    """n2: best samples taken from every cluster (the paper: 1)."""
    clusters: int = 0
    """K-Means clusters; 0 = floor(sqrt(n / 2)) as the paper."""
    variance: float = 0.95
    """PCA keeps this share of the embedding variance before clustering (the paper: 0.95)."""
    quality_scorer: str = ""
    """An IQS-like scorer folder (sequence classifier); '' = --scorer prompted as a judge."""

    def validate(self) -> None:
        if not 0 < self.variance <= 1:
            raise ConfigError("car: variance must be in (0, 1]")


class CaR(FilterMethod, name="car"):
    Params = CaRParams
    needs_answers = True
    needs_scorer = True
    uses_embeddings = True
    reference = ("Ge et al. EMNLP 2024 (IronBeliever/CaR Ranking/split_IQS.py, Clustering/cluster.py): IQS ranking,"
                 " SBERT + PCA 95% + K-Means k = sqrt(n/2), top n1 overall + top n2 per cluster")

    def score(self, ctx: FilterContext, budget: int) -> Scored:
        import numpy as np
        from sklearn.cluster import KMeans
        from sklearn.decomposition import PCA

        p = self.params
        scorer = ctx.need_scorer(self.name)
        q, qlabel = quality_scores(ctx, p.quality_scorer or scorer, ctx.samples)
        E = ctx.embeddings("sample")
        k = p.clusters or max(1, math.floor(math.sqrt(ctx.n / 2)))
        k = min(k, ctx.n)
        Z = E
        if ctx.n > 2 and p.variance < 1:
            Z = PCA(n_components=p.variance, random_state=ctx.seed, svd_solver="full").fit_transform(E)
        labels = KMeans(n_clusters=k, random_state=ctx.seed, n_init=10).fit_predict(Z) if k > 1 else \
            np.zeros(ctx.n, dtype=np.int64)
        ranked = self.ranked(q, seed=ctx.seed)
        pos = {i: r for r, i in enumerate(ranked)}
        # the best `per_cluster` of each cluster, clusters ordered by their best sample
        reps: list[int] = []
        for c in range(k):
            members = sorted((i for i in np.flatnonzero(labels == c)), key=lambda i: pos[int(i)])
            reps += [int(i) for i in members[:p.per_cluster]]
        reps.sort(key=lambda i: pos[i])
        role: dict[int, str] = {}

        def picker(scored: Scored, b: int) -> list[int]:
            role.clear()
            if len(reps) >= b:
                chosen = reps[:b]
                for i in chosen:
                    role[i] = "cluster"
            else:
                chosen_set = set(reps)
                for i in reps:
                    role[i] = "cluster"
                for i in ranked:                  # n1 = however many top-overall samples fill the budget
                    if len(chosen_set) >= b:
                        break
                    if i not in chosen_set:
                        chosen_set.add(i)
                        role[i] = "top"
                chosen = sorted(chosen_set, key=lambda i: pos[i])
            scored.details["n1_top_overall"] = sum(1 for v in role.values() if v == "top")
            scored.details["n2_cluster_best"] = sum(1 for v in role.values() if v == "cluster")
            return chosen

        def kept(i: int, r: int) -> str:
            what = (f"best of cluster {int(labels[i])}" if role.get(i) == "cluster" else
                    f"top {pos[i] + 1} overall (cluster {int(labels[i])})")
            return f"{what}, {qlabel} {q[i]:.4g}"

        return Scored(self.name, q, ranked, np.ones(ctx.n, dtype=bool), score_name="quality", picker=picker,
                      kept_reason=kept,
                      drop_reason=lambda i, o: (f"neither top overall nor the best of cluster {int(labels[i])}, "
                                                f"{qlabel} {q[i]:.4g}"),
                      details={"quality": qlabel, "clusters": k, "pca_dims": int(Z.shape[1])})


__all__ = ["MoDS", "Cherry", "Deita", "CaR", "quality_scores"]
