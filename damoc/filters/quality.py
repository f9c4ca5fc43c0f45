"""Quality-aware methods: AlpaGasus, LMA, Superfiltering, LESS (algorithms.md section 5).

The paper's scorers (ChatGPT as AlpaGasus's judge, GPT-2 for Superfiltering) are not reachable offline: every method
here takes the scorer as a choice (`--scorer`: a model folder or a registry candidate), see docs/filters.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from damoc.errors import ConfigError, DamocError
from damoc.filters.base import FilterContext, FilterMethod, MethodParams, Scored


def _instruction_and_input(s: Any) -> tuple[str, str]:
    """AlpaGasus/Deita/CaR read (instruction, input): our instruction + question, and the context (+ choices)."""
    instr = "\n\n".join(p for p in (s.instruction, s.question) if p and p.strip())
    ctx = s.context or ""
    if s.choices:
        ctx = (ctx + "\n" if ctx else "") + "\n".join(f"{'ABCDEFGHIJ'[i]}. {c}" for i, c in enumerate(s.choices))
    return instr, ctx


# ---------------------------------------------------------------------------------------------------------------
@dataclass
class AlpaGasusParams(MethodParams):
    threshold: float | None = None
    """Keep only scores >= threshold (the paper: 4.5). None: the top `budget` by score."""
    mode: Literal["generate", "probability"] = "generate"
    """generate: the judge writes a rating that is parsed (the paper); probability: read the expected 0-5 score
    from the judge's next-token probabilities (Deita's read-out), no generation."""
    fallback: bool = True
    """Score an unparseable reply by the digit probabilities instead of dropping the sample."""
    max_new_tokens: int = 32
    """Reply length (the score is asked for on the first line)."""
    fill: bool = False
    """When fewer samples than the budget pass the threshold, top up with the next best."""

    def validate(self) -> None:
        if self.threshold is not None and not 0 <= self.threshold <= 5:
            raise ConfigError(f"alpagasus: threshold must be in [0, 5], got {self.threshold}")


class AlpaGasus(FilterMethod, name="alpagasus"):
    Params = AlpaGasusParams
    needs_answers = True
    needs_scorer = True
    reference = ("Chen et al. 2023 (gpt4life/alpagasus rating/chatgpt_rating.py): accuracy prompt, 0-5 scale, "
                 "keep >= 4.5; the judge is any local LM here")

    def score(self, ctx: FilterContext, budget: int) -> Scored:
        import numpy as np

        from damoc.filters import judge, lm as L

        p = self.params
        scorer = L.ScorerLM(ctx.need_scorer(self.name), ctx.settings)
        prompts = []
        for s in ctx.samples:
            instr, inp = _instruction_and_input(s)
            prompts.append(scorer.frame(judge.alpagasus_prompt(instr, inp, s.answer), system=judge.ALPAGASUS_SYSTEM))
        n = ctx.n
        values = np.full(n, np.nan)
        how: list[str] = [""] * n
        counts = {"parsed": 0, "fallback": 0, "unreadable": 0}
        if p.mode == "generate":
            tr = ctx.tracker("judge").start(n)
            replies = L.generate(scorer, prompts, max_new_tokens=p.max_new_tokens, cache_kind="judge", tracker=tr)
            tr.finish("ok")
            failed = []
            for i, r in enumerate(replies):
                rating = judge.parse_rating(r, 0, 5)
                if rating.score is not None:
                    values[i] = rating.score
                    how[i] = f"judge replied {judge.short(r, 40)!r} -> {rating.score:g} ({rating.how})"
                    counts["parsed"] += 1
                else:
                    failed.append(i)
                    how[i] = f"unreadable judge reply {judge.short(r, 40)!r}: {rating.how}"
            if failed and p.fallback:
                tr = ctx.tracker("judge-probabilities").start(len(failed))
                ex = L.digit_expectations(scorer, [prompts[i] for i in failed], range(6), tracker=tr,
                                          cache_kind="judge-digits")
                tr.finish("ok")
                for i, (sc, mass) in zip(failed, ex):
                    values[i] = sc
                    how[i] += f"; scored {sc:.3g} by digit probabilities (mass {mass:.2g})"
                    counts["fallback"] += 1
            else:
                counts["unreadable"] = len(failed)
            if failed:
                ctx.log(f"alpagasus: {len(failed)} of {n} judge replies were unreadable"
                        + (", scored by digit probabilities" if p.fallback else ", those samples are dropped"),
                        "warning")
            if counts["parsed"] == 0 and not p.fallback:
                raise DamocError(f"alpagasus: the judge answered nonsense for all {n} samples "
                                 f"(first reply: {judge.short(replies[0], 60)!r})",
                                 "use a stronger judge (--scorer), or -p mode=probability, or -p fallback=true")
        else:
            tr = ctx.tracker("judge-probabilities").start(n)
            ex = L.digit_expectations(scorer, prompts, range(6), tracker=tr, cache_kind="judge-digits")
            tr.finish("ok")
            for i, (sc, mass) in enumerate(ex):
                values[i] = sc
                how[i] = f"expected score {sc:.3g} from digit probabilities (mass {mass:.2g})"
        scorer.close()
        eligible = np.isfinite(values)
        reasons: dict[int, str] = {}
        for i in range(n):
            if not eligible[i]:
                reasons[i] = how[i]
            elif p.threshold is not None and values[i] < p.threshold:
                eligible[i] = False
                reasons[i] = f"score {values[i]:.3g} below threshold {p.threshold:g} ({how[i]})"
        order = self.ranked(values, eligible, seed=ctx.seed)
        return Scored(self.name, values, order, eligible, score_name="judge_score",
                      kept_reason=lambda i, r: f"rank {r + 1}: {how[i]}",
                      drop_reason=lambda i, o: reasons.get(i) or f"not kept: {how[i]}",
                      reasons=reasons, fill=p.fill, details={"mode": p.mode, "threshold": p.threshold, **counts})


# ---------------------------------------------------------------------------------------------------------------
@dataclass
class LMAParams(MethodParams):
    tokenizer: str = ""
    """How response length is counted: '' = the scorer's tokenizer when --scorer is given, else the offline
    encoder's WordPiece; 'words' (whitespace), 'chars', or a tokenizer folder / HF id."""


class LMA(FilterMethod, name="lma"):
    Params = LMAParams
    needs_answers = True
    reference = ("Zhao et al. ICML 2024 (tml-epfl/long-is-more-for-alignment): the longest responses; ties by "
                 "file position")

    def score(self, ctx: FilterContext, budget: int) -> Scored:
        import numpy as np

        counter, label = _length_counter(self.params.tokenizer, ctx)
        lengths = np.asarray(counter([s.answer for s in ctx.samples]), dtype=np.float64)
        # longest first; equal lengths keep file order (stable sort)
        order = [int(i) for i in np.argsort(-lengths, kind="stable")]
        return Scored(self.name, lengths, order, np.ones(ctx.n, dtype=bool), score_name="response_tokens",
                      kept_reason=lambda i, r: f"response of {int(lengths[i])} {label}, rank {r + 1}",
                      drop_reason=lambda i, o: f"response of {int(lengths[i])} {label}: shorter than the "
                                               f"{len(o)} kept (shortest kept: {int(lengths[o[-1]])})",
                      details={"length_unit": label})


def _length_counter(spec: str, ctx: FilterContext) -> tuple[Any, str]:
    if spec == "words":
        return (lambda texts: [len(t.split()) for t in texts]), "words"
    if spec == "chars":
        return (lambda texts: [len(t) for t in texts]), "characters"
    source = spec or ctx.scorer
    if not source:
        from damoc.encoders import encoder_path
        source = encoder_path(ctx.settings, ctx.encoder)
    tj = Path(source) / "tokenizer.json"
    if tj.is_file():                                  # the Rust tokenizer: fast, and no transformers import
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(str(tj))
        return (lambda texts: [len(e.ids) for e in tok.encode_batch(list(texts), add_special_tokens=False)]), \
            f"tokens ({Path(source).name} tokenizer)"
    from damoc.models import load_tokenizer
    try:
        hf = load_tokenizer(source)
    except OSError as e:
        raise ConfigError(f"lma: cannot load the tokenizer {source!r}: {str(e).splitlines()[0]}",
                          "use -p tokenizer=words, a tokenizer folder, or give --scorer") from None
    return (lambda texts: [len(hf(t, add_special_tokens=False)["input_ids"]) for t in texts]), \
        f"tokens ({Path(str(source)).name} tokenizer)"


# ---------------------------------------------------------------------------------------------------------------
@dataclass
class SuperfilteringParams(MethodParams):
    threshold: float = 1.0
    """Drop samples with IFD >= threshold (the paper: 1, the instruction does not help)."""
    diversity: Literal["none", "fl"] = "none"
    """fl = the Superfiltering.D variant: FacilityLocation on sentence embeddings over the top IFD candidates."""
    fl_pool: float = 10.0
    """With diversity=fl: candidates = fl_pool x budget top-IFD samples (the paper: 20% -> 2%)."""
    fill: bool = False
    """When fewer samples than the budget have IFD < threshold, top up with the next best."""


class Superfiltering(FilterMethod, name="superfiltering"):
    Params = SuperfilteringParams
    needs_answers = True
    needs_scorer = True
    reference = ("Li et al. ACL 2024 (tianyi-lab/Superfiltering code_ifd/data_analysis.py, select_data.py): "
                 "IFD = ppl(A|Q) / ppl(A) = exp(L(A|Q) - L(A)) with a small scorer (GPT-2 there)")

    def score(self, ctx: FilterContext, budget: int) -> Scored:
        import numpy as np

        from damoc.filters import lm as L

        p = self.params
        scorer = L.ScorerLM(ctx.need_scorer(self.name), ctx.settings)
        tr = ctx.tracker("ifd").start(ctx.n)
        losses = L.answer_losses(scorer, ctx.samples, tracker=tr)
        tr.finish("ok")
        scorer.close()
        ifd = np.array([L.ifd_superfiltering(x) for x in losses])
        eligible = np.isfinite(ifd) & (ifd < p.threshold)
        reasons = {i: ("no IFD: the answer has no scorable tokens" if not np.isfinite(ifd[i]) else
                       f"IFD {ifd[i]:.4g} >= {p.threshold:g}: the instruction does not make the answer easier "
                       f"(misaligned), dropped")
                   for i in range(ctx.n) if not eligible[i]}
        order = self.ranked(ifd, eligible, seed=ctx.seed)
        details: dict[str, Any] = {"ifd": "exp(L(A|Q) - L(A)) (Superfiltering: perplexity ratio)",
                                   "eligible": int(eligible.sum()), "threshold": p.threshold}
        kept = lambda i, r: f"IFD {ifd[i]:.4g} < {p.threshold:g}, rank {r + 1} (higher = harder yet aligned)"
        if p.diversity == "fl" and order:
            from damoc.filters.greedy import facility_location_greedy

            cands = order[:max(budget, math.ceil(p.fl_pool * budget))]
            E = ctx.embeddings("sample")[cands]
            k = min(budget, len(cands))
            res = facility_location_greedy(E, k, device=ctx.device())
            order = [cands[int(j)] for j in res.order]
            details.update(diversity="facility location", candidates=len(cands))
            kept = lambda i, r: (f"IFD {ifd[i]:.4g} among the top {len(cands)}, FacilityLocation pick {r + 1}")
        return Scored(self.name, ifd, order, eligible, score_name="ifd", reasons=reasons, fill=p.fill,
                      kept_reason=kept, details=details)


# ---------------------------------------------------------------------------------------------------------------
@dataclass
class LESSParams(MethodParams):
    warmup_fraction: float = 0.05
    """Share of the pool the warm-up LoRA trains on (the paper: 5%)."""
    epochs: int = 4
    """Warm-up epochs; gradient features are taken after each (the paper: 4 checkpoints)."""
    lr: float = 2e-5
    """Warm-up peak learning rate (the paper: 2e-5, linear decay)."""
    lora_r: int = 8
    """LoRA rank (the paper: 128 on 7B models; small here so CPU runs stay short)."""
    lora_alpha: int = 32
    """LoRA alpha (the paper keeps alpha = 4 r)."""
    proj_dim: int = 8192
    """Random projection dimension of the gradients (the paper: 8192)."""
    max_length: int = 256
    """Tokens per sample (the paper: 2048)."""
    batch_size: int = 4
    """Warm-up batch size."""

    def validate(self) -> None:
        if not 0 < self.warmup_fraction <= 1:
            raise ConfigError("less: warmup_fraction must be in (0, 1]")
        if self.epochs < 1 or self.proj_dim < 1:
            raise ConfigError("less: epochs and proj_dim must be >= 1")


class LESS(FilterMethod, name="less"):
    Params = LESSParams
    needs_answers = True
    needs_scorer = True
    reference = ("Xia et al. ICML 2024 (princeton-nlp/LESS collect_grad_reps.py, matching.py): Adam-preconditioned "
                 "LoRA gradients vs SGD target gradients, lr-weighted over checkpoints, mean per subtask, max")

    def score(self, ctx: FilterContext, budget: int) -> Scored:
        import numpy as np

        from damoc.filters import warmup as W

        p = self.params
        if not ctx.target:
            raise ConfigError("less needs target samples to match against",
                              "pass --target FILE (the task's validation split), or target= in the Python API")
        model_path = ctx.need_scorer(self.name)
        rng = np.random.default_rng(ctx.seed)
        k = max(1, min(ctx.n, round(p.warmup_fraction * ctx.n)))
        warm_idx = sorted(int(i) for i in rng.choice(ctx.n, size=k, replace=False))
        groups = _target_groups(ctx.target)
        per_ckpt: list[tuple[float, Any]] = []
        tr_feat = ctx.tracker("less-gradients")
        tr_feat.start(p.epochs * (ctx.n + len(ctx.target)))
        state: dict[str, Any] = {"proj": None, "done": 0}
        from damoc.models import load_tokenizer
        tok = load_tokenizer(model_path)

        def on_epoch(epoch: int, model: Any, opt: Any, lr: float) -> None:
            if state["proj"] is None:
                state["proj"] = W.RademacherProjector(W.n_trainable(model), p.proj_dim, seed=ctx.seed)
            train = W.grad_features(model, tok, ctx.samples, max_length=p.max_length, projector=state["proj"],
                                    optimizer=opt, tracker=tr_feat, offset=state["done"])
            state["done"] += ctx.n
            target = W.grad_features(model, tok, ctx.target, max_length=p.max_length, projector=state["proj"],
                                     tracker=tr_feat, offset=state["done"])
            state["done"] += len(ctx.target)
            per_ckpt.append((lr, train @ target.T))         # cosine: both sides are unit rows

        tr = ctx.tracker("less-warmup").start(None)
        cfg = W.LoraConfigLite(r=p.lora_r, alpha=p.lora_alpha, lr=p.lr, epochs=p.epochs, batch_size=p.batch_size,
                               max_length=p.max_length)
        run = W.lora_train(model_path, [ctx.samples[i] for i in warm_idx], cfg, settings=ctx.settings,
                           seed=ctx.seed, tracker=tr, on_epoch_end=on_epoch)
        tr.finish("ok", steps=run.steps)
        tr_feat.finish("ok")
        lrs = np.array([lr for lr, _ in per_ckpt], dtype=np.float64)
        w = lrs / lrs.sum() if lrs.sum() > 0 else np.full(len(lrs), 1 / len(lrs))
        sims = sum(wi * s for wi, (_, s) in zip(w, per_ckpt))            # (n, m)
        by_group = np.stack([sims[:, g].mean(1) for g in groups.values()], axis=1)
        values = by_group.max(1)
        best = [list(groups)[j] for j in by_group.argmax(1)]
        order = self.ranked(values, seed=ctx.seed)
        return Scored(self.name, values, order, np.ones(ctx.n, dtype=bool), score_name="influence",
                      kept_reason=lambda i, r: (f"gradient similarity {values[i]:.4g} to target"
                                                f"{'' if len(groups) == 1 else ' group ' + repr(best[i])}, "
                                                f"rank {r + 1}"),
                      details={"warmup_samples": k, "checkpoints": len(per_ckpt), "target": len(ctx.target),
                               "target_groups": {g: len(ix) for g, ix in groups.items()},
                               "projected": bool(state["proj"] and state["proj"].k < state["proj"].p),
                               "lora_params": int(state["proj"].p) if state["proj"] else 0})


def _target_groups(target: list[Any]) -> dict[str, list[int]]:
    """LESS averages per validation subtask and takes the max: group by subject/task/category when present."""
    for key in ("subject", "task", "category", "subtask"):
        vals = [str(t.extra.get(key)) for t in target if t.extra.get(key) not in (None, "")]
        if len(vals) == len(target) and len(set(vals)) > 1:
            out: dict[str, list[int]] = {}
            for i, v in enumerate(vals):
                out.setdefault(v, []).append(i)
            return out
    return {"target": list(range(len(target)))}


__all__ = ["AlpaGasus", "LMA", "Superfiltering", "LESS"]
