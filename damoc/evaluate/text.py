"""Text metrics that need no model: SQuAD F1/EM and ROUGE-L's tokenisation (light; no torch)."""
from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1's normalisation (official evaluate-v1.1.py, re-implemented): lower case, drop punctuation, drop
    the articles a/an/the, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def f1_em(prediction: str, reference: str) -> tuple[float, float]:
    """Token F1 and exact match of one prediction against one reference (both in [0, 1])."""
    p, r = normalize_answer(prediction), normalize_answer(reference)
    em = float(p == r)
    pt, rt = p.split(), r.split()
    if not pt or not rt:                    # both empty: a match; one empty: nothing in common
        return float(pt == rt), em
    common = Counter(pt) & Counter(rt)
    same = sum(common.values())
    if same == 0:
        return 0.0, em
    precision, recall = same / len(pt), same / len(rt)
    return 2 * precision * recall / (precision + recall), em


def squad_scores(prediction: str, references: Sequence[str]) -> tuple[float, float]:
    """SQuAD's max over the acceptable answers, F1 and EM each maximised separately (as the official script)."""
    if not references:
        return 0.0, 0.0
    pairs = [f1_em(prediction, r) for r in references]
    return max(f for f, _ in pairs), max(e for _, e in pairs)


def mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean: sample std (ddof=1) / sqrt(n), as lm-evaluation-harness reports it.
    n < 2 gives a stderr of 0.0 (undefined; nothing to estimate spread from)."""
    n = len(values)
    if n == 0:
        return 0.0, 0.0
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


# CJK ideographs/kana/hangul count one token each (no spaces between words); other scripts split on non-word chars
_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]|[^\W_]+", re.UNICODE)


class UnicodeRougeTokenizer:
    """rouge-score's default tokenizer drops every non [a-z0-9] character, so a Greek, Russian or Chinese answer
    scores 0 against itself. This one keeps letters of any script and stems ASCII words with the same Porter
    stemmer rouge-score uses (words over 3 letters, like rouge-score), so English scores are unchanged."""

    def __init__(self, stem: bool = True) -> None:
        self._stemmer = None
        if stem:
            from nltk.stem import porter
            self._stemmer = porter.PorterStemmer()

    def tokenize(self, text: str) -> list[str]:
        tokens = _TOKEN.findall(text.lower())
        if self._stemmer is None:
            return tokens
        return [self._stemmer.stem(t) if (len(t) > 3 and t.isascii()) else t for t in tokens]
