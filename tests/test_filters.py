"""The filter API, the CLI and the methods that need no language model (GraphCut, DQ, KCenterGreedy, Random, LMA),
on real data (/work/shared/data slices) and real MiniLM embeddings."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from damoc.data import Sample, load_samples
from damoc.errors import ConfigError, DataError
from damoc.filters import FILTERS, list_methods, select
from tests.helpers.cache import cache_dir
from tests.helpers.cli import damoc

PAPER_METHODS = ["dq", "graphcut", "kcentergreedy", "random", "alpagasus", "lma", "superfiltering", "less", "mods",
                 "cherry", "deita", "car"]


@pytest.fixture(scope="module")
def emb_settings():
    """Settings whose cache outlives the test session, so MiniLM encodes each text once across runs."""
    from damoc.settings import Settings
    return Settings.load(home=cache_dir() / "filters-home")


@pytest.fixture(scope="module")
def alpaca(shared_data):
    return load_samples(shared_data / "alpaca" / "train.jsonl", limit=240).samples[:240]


@pytest.fixture(scope="module")
def alpaca_emb(alpaca, emb_settings):
    from damoc.embeddings import encode
    from damoc.filters.base import sample_text
    return encode([sample_text(s) for s in alpaca], settings=emb_settings)


# -- registry and listing ------------------------------------------------------------------------------------------
def test_twelve_methods_in_three_families():
    methods = list_methods()
    assert [m["name"] for m in methods if m["family"] == "distribution"] == ["dq", "graphcut", "kcentergreedy",
                                                                            "random"]
    assert sorted(m["name"] for m in methods) == sorted(PAPER_METHODS)
    assert {m["family"] for m in methods} == {"distribution", "quality", "hybrid"}
    for m in methods:                                       # every entry resolves to a method with that name
        cls = FILTERS.get(m["name"])
        assert cls.name == m["name"] and cls.family == m["family"] and cls.description == m["description"]
    assert FILTERS.normalise("KCenterGreedy") == "kcentergreedy" and FILTERS.normalise("kcenter") == "kcentergreedy"


def test_listing_imports_no_numpy_or_torch():
    code = ("import sys, damoc.filters as f; f.list_methods(); import damoc.cli.filter\n"
            "bad = [m for m in ('numpy', 'torch', 'transformers', 'sklearn') if m in sys.modules]\n"
            "assert not bad, bad")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_cli_list_json():
    p = damoc("filter", "--list", "--json")
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    assert len(rows) == 12 and all({"name", "family", "description"} <= set(r) for r in rows)


# -- budgets and bad input -------------------------------------------------------------------------------------------
def _toy(n, answer=True):
    return [Sample(id=f"s{i}", question=f"question {i} " + "word " * (i % 7), answer=f"answer {i}" if answer else "")
            for i in range(n)]


@pytest.mark.parametrize("kwargs,match", [
    ({"ratio": 0.0}, "ratio must be in"), ({"ratio": 1.5}, "ratio must be in"), ({"ratio": -0.1}, "ratio must be"),
    ({"count": 21}, "larger than the data"), ({"count": 0}, "positive"), ({"ratio": 0.01}, "keeps none"),
])
def test_bad_budgets_are_clear_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match) as e:
        select(_toy(20), "random", **kwargs)
    assert e.value.hint or "keeps none" in str(e.value) or "positive" in str(e.value)


def test_empty_data_and_missing_answers():
    with pytest.raises(DataError, match="no samples"):
        select([], "random")
    pool = _toy(10)
    pool[3] = pool[3].with_fields(answer="")
    with pytest.raises(DataError, match="1 sample"):
        select(pool, "lma", count=2)
    sel = select(pool, "lma", count=2, skip_bad=True)         # dropped, with the reason recorded
    assert sel.kept == 2 and "no answer" in sel.reasons["s3"] and "s3" not in sel.ids
    assert sel.n == 10 and sel.dropped == 8


def test_unknown_method_and_params():
    from damoc.errors import UnknownNameError
    with pytest.raises(UnknownNameError) as e:
        select(_toy(5), "graphcat")
    assert "graphcut" in str(e.value)
    with pytest.raises(ConfigError, match="unknown parameter 'lamda'"):
        select(_toy(5), "graphcut", count=2, params={"lamda": 1})
    with pytest.raises(ConfigError, match="not a valid float"):
        select(_toy(5), "graphcut", count=2, params={"lam": "much"})


def test_embeddings_shape_is_checked():
    with pytest.raises(DataError, match="3 rows for 5 samples"):
        select(_toy(5), "graphcut", count=2, embeddings=np.ones((3, 4)))
    bad = np.ones((5, 4))
    bad[2] = 0
    with pytest.raises(DataError, match="row 2 is all zeros"):
        select(_toy(5), "graphcut", count=2, embeddings=bad)


# -- distribution-aware methods on real data ------------------------------------------------------------------------
def test_random_is_seeded_and_exact(alpaca):
    a = select(alpaca, "random", ratio=0.1, seed=1)
    assert a.kept == 24 and a.dropped == 216 and len(set(a.ids)) == 24
    assert select(alpaca, "random", ratio=0.1, seed=1).ids == a.ids
    assert select(alpaca, "random", ratio=0.1, seed=2).ids != a.ids
    assert all(a.reasons[i].startswith("random draw") for i in a.ids)


def test_graphcut_on_real_embeddings_equals_submodlib(alpaca, alpaca_emb):
    import submodlib
    sel = select(alpaca, "graphcut", count=30, embeddings=alpaca_emb, params={"optimizer": "exact", "pool": 16})
    E = alpaca_emb / np.linalg.norm(alpaca_emb, axis=1, keepdims=True)
    ref = submodlib.GraphCutFunction(n=len(E), mode="dense", lambdaVal=0.4, ggsijs=(E @ E.T).astype(np.float64))
    picks = [alpaca[i].id for i, _ in ref.maximize(budget=30, optimizer="NaiveGreedy", show_progress=False)]
    assert sel.ids == picks
    assert sel.details["exact_picks"] == 30
    assert "GraphCut pick 1" in sel.reasons[sel.ids[0]]


def test_graphcut_encodes_with_minilm_and_caches(alpaca, alpaca_emb, emb_settings, monkeypatch):
    # the embeddings stage reuses the on-disk cache: the encoder must not even be loaded
    import damoc.embeddings as emb
    monkeypatch.setattr(emb, "_load_encoder", lambda *a: (_ for _ in ()).throw(AssertionError("re-encoded")))
    sel = select(alpaca, "graphcut", count=30, settings=emb_settings, params={"optimizer": "exact"})
    given = select(alpaca, "graphcut", count=30, embeddings=alpaca_emb, params={"optimizer": "exact"})
    assert sel.ids == given.ids


def test_dq_draws_from_every_bin(alpaca, alpaca_emb):
    sel = select(alpaca, "dq", count=30, embeddings=alpaca_emb, params={"bins": 5}, seed=3)
    bins = sel.details["bin_sizes"]
    assert bins == [48] * 5 and sel.details["per_bin"] == [6] * 5
    kept_bins = [int(sel.scores[i]) for i in sel.ids]         # score = the sample's bin
    assert sorted(kept_bins) == sorted([1, 2, 3, 4, 5] * 6)
    assert all(f"bin {b} of 5" in sel.reasons[i] for i, b in zip(sel.ids, kept_bins))
    # bins come from GraphCut, the draws from the seed: another seed, same bins, other draws
    other = select(alpaca, "dq", count=30, embeddings=alpaca_emb, params={"bins": 5}, seed=4)
    assert {i: sel.scores[i] for i in sel.scores} == {i: other.scores[i] for i in other.scores}
    assert set(other.ids) != set(sel.ids)
    # an uneven budget is spread by largest remainder and still sums exactly
    assert select(alpaca, "dq", count=7, embeddings=alpaca_emb, params={"bins": 5}).kept == 7


def test_kcenter_on_real_embeddings(alpaca, alpaca_emb):
    sel = select(alpaca, "kcentergreedy", count=20, embeddings=alpaca_emb, seed=0)
    assert sel.kept == 20 and sel.reasons[sel.ids[0]].startswith("first centre")
    pos = {s.id: i for i, s in enumerate(alpaca)}
    E = alpaca_emb[[pos[i] for i in sel.ids]]
    # farthest-first: each new centre's recorded distance is its distance to the nearest earlier centre
    for k in range(1, 20):
        d = np.linalg.norm(E[:k] - E[k], axis=1).min()
        assert abs(d - sel.scores[sel.ids[k]]) < 1e-4
    # and no point ends up farther from its nearest centre than the last centre was
    assert max(v for i, v in sel.scores.items() if i not in set(sel.ids)) <= sel.scores[sel.ids[-1]] + 1e-5


def test_lma_keeps_the_longest_responses(alpaca):
    sel = select(alpaca, "lma", ratio=0.1, params={"tokenizer": "words"})
    words = sorted(((len(s.answer.split()), -k, s.id) for k, s in enumerate(alpaca)), reverse=True)
    assert sel.ids == [sid for _, _, sid in words[:24]]      # longest first, ties in file order
    # the default counts tokens of the offline encoder's tokenizer (recorded in the reasons)
    from tokenizers import Tokenizer

    from damoc.encoders import default_encoder_path
    tok = Tokenizer.from_file(str(Path(default_encoder_path()) / "tokenizer.json"))
    sel = select(alpaca, "lma", count=10)
    lengths = {s.id: len(tok.encode(s.answer, add_special_tokens=False).ids) for s in alpaca}
    assert min(lengths[i] for i in sel.ids) >= max(v for i, v in lengths.items() if i not in set(sel.ids))
    assert "tokens" in sel.reasons[sel.ids[0]]


def test_scores_can_serve_another_ratio_without_rescoring(alpaca, alpaca_emb):
    from damoc.filters import score
    pool = score(alpaca, "graphcut", ratio=0.2, embeddings=alpaca_emb)
    big, small = pool.select(ratio=0.2), pool.select(ratio=0.05)
    assert big.ids[:small.kept] == small.ids and small.kept == 12
    assert pool.select(ratio=0.3).ids[:48] == big.ids          # a larger budget extends the greedy run


# -- the CLI on the real pubmedqa file ------------------------------------------------------------------------------
def test_cli_writes_original_records_and_scores(shared_data, tmp_path):
    src = shared_data / "pubmedqa" / "train.jsonl"
    out, scores = tmp_path / "subset.jsonl", tmp_path / "scores.jsonl"
    p = damoc("filter", str(src), "--method", "random", "--ratio", "0.1", "--out", str(out), "--scores", str(scores),
              "--json", "--seed", "5")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)                          # stdout holds the JSON alone
    assert summary["kept"] == 50 and summary["dropped"] == 450 and summary["method"] == "random"
    original = {json.loads(line)["id"]: line for line in src.read_text().split("\n") if line.strip()}
    lines = [x for x in out.read_text().split("\n") if x.strip()]   # not splitlines: records hold U+2028
    assert len(lines) == 50
    for line in lines:                                      # every record written back untouched
        rec = json.loads(line)
        assert json.loads(original[rec["id"]]) == rec
    rows = [json.loads(x) for x in scores.read_text().split("\n") if x.strip()]
    assert len(rows) == 500 and sum(r["kept"] for r in rows) == 50
    assert all(r["reason"] for r in rows)


def test_cli_precomputed_embeddings_and_errors(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"id": str(i), "instruction": f"q{i}", "output": f"a{i}"}) + "\n"
                            for i in range(200)))
    emb = tmp_path / "e.npy"
    np.save(emb, np.random.default_rng(0).standard_normal((200, 16)).astype("float32"))
    p = damoc("filter", str(data), "--method", "graphcut", "--count", "20", "--embeddings", str(emb),
              "--out", str(tmp_path / "o.jsonl"), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["kept"] == 20 and len((tmp_path / "o.jsonl").read_text().splitlines()) == 20
    np.save(emb, np.ones((199, 16), dtype="float32"))
    p = damoc("filter", str(data), "--embeddings", str(emb))
    assert p.returncode == 2 and "199 rows for 200 samples" in p.stderr
    p = damoc("filter", str(data), "--ratio", "0")
    assert p.returncode == 2 and "ratio must be in (0, 1]" in p.stderr
    p = damoc("filter", str(data), "-m", "superfiltering")
    assert p.returncode == 2 and "needs a scorer" in p.stderr and "--scorer" in p.stderr


# -- embeddings ------------------------------------------------------------------------------------------------------
def test_encode_is_normalised_cached_by_content(settings, monkeypatch):
    import damoc.embeddings as emb
    texts = ["the cat sat on the mat", "a dog barked", "the cat sat on the mat"]
    E = emb.encode(texts, settings=settings)
    assert E.shape == (3, 384) and E.dtype == np.float32
    assert np.allclose(np.linalg.norm(E, axis=1), 1, atol=1e-5) and np.allclose(E[0], E[2])
    assert E[0] @ E[1] < 0.9
    seen = []
    real = emb._load_encoder

    def spy(path, device):
        model = real(path, device)

        class Spy:
            def encode(self, batch, **kw):
                seen.extend(batch)
                return model.encode(batch, **kw)
        return Spy()
    monkeypatch.setattr(emb, "_load_encoder", spy)
    E2 = emb.encode(["a dog barked", "a new sentence"], settings=settings)
    assert seen == ["a new sentence"]                      # only the unseen text is encoded
    assert np.allclose(E2[0], E[1], atol=1e-6)
