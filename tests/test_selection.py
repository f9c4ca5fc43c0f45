"""P(best): the paired bootstrap over test items, checked against hand-computed cases, and the leaderboard rule
built on it."""
from __future__ import annotations

import pytest

from damoc.errors import DataError
from damoc.pipeline.config import LeaderboardSection
from damoc.pipeline.leaderboard import build_leaderboard
from damoc.selection import p_best, p_best_exact


def test_exact_bootstrap_on_hand_computed_cases():
    # two items, each candidate right on one: the 4 resamples give a win each way and two ties
    assert p_best_exact({"a": [1, 0], "b": [0, 1]}) == {"a": 0.5, "b": 0.5}
    # a = [1,1,0], b = [1,0,0], c = [0,1,1] over 27 resamples. b never beats a (a >= b on every item), so b only
    # shares wins with a, on draws without item 1 (8 of them) where b's count of item 0 >= c's count of item 2:
    # (3,0) once and (2,1) three times -> 4 draws at half a win = 2/27.
    got = p_best_exact({"a": [1, 1, 0], "b": [1, 0, 0], "c": [0, 1, 1]})
    assert got["b"] == pytest.approx(2 / 27)
    assert sum(got.values()) == pytest.approx(1.0)
    # a dominates b on every item: every resample is a's (or a tie on the resamples of the equal item only)
    assert p_best_exact({"a": [2, 1, 1], "b": [1, 1, 0]})["a"] > 0.9


def test_sampled_bootstrap_matches_the_exact_one():
    cases = {"a": [1, 1, 0], "b": [1, 0, 0], "c": [0, 1, 1]}
    exact, sampled = p_best_exact(cases), p_best(cases, resamples=40_000, seed=1)
    assert all(sampled[k] == pytest.approx(exact[k], abs=0.01) for k in cases)
    assert p_best(cases, resamples=2000, seed=3) == p_best(cases, resamples=2000, seed=3)      # seeded


def test_pairing_makes_a_consistent_small_gap_certain():
    # b is a's score minus 0.01 on every item: unpaired standard errors overlap completely, the pairing does not
    a = [float(i % 7) for i in range(50)]
    b = [x - 0.01 for x in a]
    assert p_best({"a": a, "b": b}) == {"a": 1.0, "b": 0.0}


def test_a_predictions_spread_and_shift_move_the_probability():
    a, b = [1.0] * 10, [0.0] * 10
    assert p_best({"a": a, "b": b})["a"] == 1.0
    # shifted to equal means with equal spreads: a coin flip
    even = p_best({"a": a, "b": b}, shift={"b": 1.0}, spread={"a": 0.5, "b": 0.5}, resamples=20_000)
    assert even["a"] == pytest.approx(0.5, abs=0.02)


def test_bad_inputs_are_data_errors():
    with pytest.raises(DataError, match="same items"):
        p_best({"a": [1, 0], "b": [1]})
    with pytest.raises(DataError, match="finite"):
        p_best({"a": [1, float("nan")], "b": [1, 0]})


def _cell(method: str, score: float) -> dict:
    return {"state": "done", "result": {"method": method, "seed": 0, "score": score, "train_seconds": 1.0}}


def test_leaderboard_rows_carry_p_best_and_too_close_follows_from_it():
    cells = {"A/finetune-full-s0": _cell("full", 60.0), "B/finetune-full-s0": _cell("full", 55.0),
             "C/finetune-full-s0": _cell("full", 10.0)}
    clear = {"A/finetune-full-s0": [100.0, 80.0, 60.0, 0.0] * 5, "B/finetune-full-s0": [90.0, 70.0, 60.0, 0.0] * 5,
             "C/finetune-full-s0": [10.0, 10.0, 10.0, 10.0] * 5}
    lb = build_leaderboard(run_id="r", mode="damoc", candidates=list("ABC"), methods=["full"], seeds=[0],
                           cells=cells, per_item=clear)
    rows = {r.candidate: r for r in lb.rows}
    assert rows["A"].p_best == 1.0 and rows["B"].p_best == 0.0 and not lb.too_close_to_call   # A wins every item
    # B = A but 20 points lower on three items and 20 higher on two: a mean 1 point lower, yet not certain
    b = list(clear["A/finetune-full-s0"])
    for j in range(3):
        b[4 * j + 1] = 60.0
    for j in range(3, 5):
        b[4 * j + 2] = 80.0
    close = dict(clear, **{"B/finetune-full-s0": b})
    cells["B/finetune-full-s0"] = _cell("full", 59.0)
    lb = build_leaderboard(run_id="r", mode="damoc", candidates=list("ABC"), methods=["full"], seeds=[0],
                           cells=cells, per_item=close)
    rows = {r.candidate: r for r in lb.rows}
    assert 0.2 < rows["B"].p_best < 0.5 < rows["A"].p_best < 0.9 and rows["C"].p_best == 0.0
    assert rows["A"].too_close and rows["B"].too_close and not rows["C"].too_close
    assert "P(best)" in lb.note and lb.to_dict()["rows"][0]["p_best"] == rows["A"].p_best
    assert lb.to_csv().splitlines()[0].endswith(",p_best") and "P(best)" in lb.to_markdown()
