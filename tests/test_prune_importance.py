"""Layer importance (Eq. 3): hook-based cosines match a by-hand computation, padding never counts, the first token
is optional, and every test-zoo architecture gets sane scores; layer choice guards."""
from __future__ import annotations

import pytest

from tests.helpers.tiny_archs import tiny_model, tiny_tokenizer

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = ["the quick brown fox jumps over the lazy dog. one two three four five.",
         "question: where does ana live? answer: in the town of bree.",
         "a tiny model learns to count"]


def _by_hand(model, tok, texts, first_token):
    """Mean cosine between hidden_states[i] and [i+1] over real tokens, for layers 0..L-2 (the last entry of
    hidden_states is post-norm, so the last layer cannot be checked this way)."""
    L = model.config.num_hidden_layers
    sums, counts = [0.0] * (L - 1), 0
    for t in texts:
        ids = tok(t, return_tensors="pt", truncation=True, max_length=256)["input_ids"]
        with torch.no_grad():
            hs = model(ids, output_hidden_states=True).hidden_states
        start = 0 if first_token else 1
        for i in range(L - 1):
            sums[i] += float(torch.nn.functional.cosine_similarity(hs[i][0, start:], hs[i + 1][0, start:], dim=-1)
                             .double().sum())
        counts += ids.shape[1] - start
    return [s / counts for s in sums]


@pytest.mark.parametrize("model_type", ["llama", "gemma2", "gpt_neox"])
@pytest.mark.parametrize("first_token", [False, True])
def test_scores_match_a_by_hand_computation(model_type, first_token, tmp_path):
    from damoc.prune import layer_importance

    model, tok = tiny_model(model_type, layers=5), tiny_tokenizer(tmp_path)
    scores = layer_importance(model, tok, TEXTS, first_token=first_token, batch_size=3)
    assert len(scores) == 5
    assert all(-1.0 <= s <= 1.0 for s in scores)
    assert scores[:-1] == pytest.approx(_by_hand(model, tok, TEXTS, first_token), abs=1e-5)


def test_padding_is_excluded_and_the_first_token_is_optional(tmp_path):
    from damoc.prune import layer_importance

    model, tok = tiny_model("qwen2", layers=4), tiny_tokenizer(tmp_path)
    alone = layer_importance(model, tok, TEXTS, batch_size=1)          # no padding at all
    padded = layer_importance(model, tok, TEXTS, batch_size=3)         # short texts padded to the longest
    assert padded == pytest.approx(alone, abs=1e-5)
    with_first = layer_importance(model, tok, TEXTS, batch_size=3, first_token=True)
    assert max(abs(a - b) for a, b in zip(with_first, alone)) > 1e-4


def test_no_text_is_a_clear_error(tmp_path):
    from damoc.errors import DamocError
    from damoc.prune import layer_importance

    with pytest.raises(DamocError, match="calibration"):
        layer_importance(tiny_model("llama", 2), tiny_tokenizer(tmp_path), ["", "  "])


def test_choose_layers_guards():
    from damoc.errors import ConfigError
    from damoc.prune import choose_layers

    s = [0.99, 0.5, 0.95, 0.90, 0.86, 0.97, 0.2, 0.999]
    assert choose_layers(s, 0.85, max_fraction=0.25) == [2, 5]        # the 2 most similar, first/last kept
    assert choose_layers(s, 0.85, max_fraction=0.5) == [2, 3, 4, 5]
    assert choose_layers(s, 0.85, max_fraction=0.25, keep_first=False, keep_last=False) == [0, 7]
    assert choose_layers(s, 0.96, max_fraction=0.5) == [5]
    assert choose_layers([0.99] * 3, 0.85) == []                       # floor(0.25 * 3) = 0: tiny models untouched
    assert len(choose_layers([0.99] * 4, 0.85, max_fraction=0.99, keep_first=False, keep_last=False)) == 3
    with pytest.raises(ConfigError):
        choose_layers(s, 1.5)
    with pytest.raises(ConfigError):
        choose_layers(s, 0.85, max_fraction=1.0)


def test_zoo_scores_for_every_architecture(test_zoo):
    """Real trained Chat models of the test zoo: one finite score per layer, self-calibration deterministic."""
    from damoc.models import load_causal_lm, load_tokenizer
    from damoc.prune import layer_importance, self_calibration_texts

    seen = set()
    for c in test_zoo:
        if c.architecture in seen:
            continue
        seen.add(c.architecture)
        model, tok = load_causal_lm(c.chat_path, device="cpu"), load_tokenizer(c.chat_path)
        texts = self_calibration_texts(model, tok, n=4, max_new_tokens=24, seed=3)
        assert texts == self_calibration_texts(model, tok, n=4, max_new_tokens=24, seed=3)
        scores = layer_importance(model, tok, texts)
        assert len(scores) == c.layers
        assert all(-1.0 <= s <= 1.0 for s in scores), (c.name, scores)
        assert len(set(round(s, 6) for s in scores)) > 1
    assert len(seen) >= 5
