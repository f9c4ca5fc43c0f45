"""Curve predictors (damoc.curves): known laws, the real AtS tables, table errors, uncertainty and the CLI."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from damoc.curves import PREDICTORS, Curve, predict
from damoc.curves.simple import phase_transition
from damoc.curves.statespace import StateSpace
from damoc.curves.stats import p_best, pearcorr, relacc
from damoc.curves.table import read_table
from damoc.errors import ConfigError, DataError, UnknownNameError

CURVES = Path(__file__).resolve().parents[2] / "shared" / "data" / "finetune-curves"
SIZES = tuple(200.0 * 2 ** k for k in range(8))           # 200 ... 25,600
TARGET = 1_638_400


def power_law(name: str, a: float, beta: float, noise: tuple[float, ...] = ()) -> Curve:
    """L(D) = a * D^-beta, times exp(noise) per point."""
    eps = noise or (0.0,) * len(SIZES)
    return Curve(name, SIZES, tuple(a * s ** -beta * math.exp(e) for s, e in zip(SIZES, eps)))


def exponent(p, curve: Curve) -> float:
    """The log-log slope the prediction implies between the last measured point and the target."""
    return -(math.log(p.predicted) - math.log(curve.last)) / math.log(TARGET / curve.sizes[-1])


# -- known laws ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["ats", "damoc", "irw"])
def test_power_laws_recover_their_exponents(name):
    # deterministic +-0.5% wiggle so that the noise variances are identifiable
    wiggle = tuple(0.005 * (-1) ** k for k in range(len(SIZES)))
    curves = [power_law("slow", 8.0, 0.05, wiggle), power_law("mid", 6.0, 0.10, wiggle[::-1]),
              power_law("fast", 9.0, 0.20, wiggle)]
    got = {p.name: p for p in predict(curves, TARGET, name)}
    for c, beta in zip(curves, (0.05, 0.10, 0.20)):
        assert exponent(got[c.name], c) == pytest.approx(beta, abs=0.01), (name, c.name)
    assert [p.name for p in predict(curves, TARGET, name)][0] == "fast"


def test_ats_skips_the_pre_power_phase():
    # flat (pre-power) for three sizes, then an exact power law of exponent 0.3: AtS keeps only the power phase
    flat = [5.0, 4.99, 4.98]
    power = [4.9 * (s / SIZES[3]) ** -0.3 for s in SIZES[3:]]
    lx, ly = [math.log(s) for s in SIZES], [math.log(v) for v in flat + power]
    power_ly = [v + 1e-4 * (-1) ** k for k, v in enumerate(ly[3:])]       # noise makes the residual std > 0
    assert phase_transition(lx, ly[:3] + power_ly, k=3, delta=5) == 2
    c = Curve("late", SIZES, tuple(math.exp(v) for v in ly[:3] + power_ly))
    (p,) = predict([c], TARGET, "ats")
    assert exponent(p, c) == pytest.approx(0.3, abs=0.005)
    # a curve of at most k points keeps every point
    assert phase_transition(lx[:3], ly[:3], k=3, delta=5) == -1


def test_damoc_fits_noise_and_a_catch_up_drift_on_converging_curves():
    # curves that converge: the higher one steepens (the catch-up the drift models), the low one stays put
    xs = [math.log(s) for s in SIZES]
    def curve(name, l0, s0, kappa, c):        # the drift's noiseless solution: l'' = -kappa (l - c)
        w = math.sqrt(kappa)
        ls = [c + (l0 - c) * math.cos(w * (x - xs[0])) + s0 / w * math.sin(w * (x - xs[0])) for x in xs]
        return Curve(name, SIZES, tuple(math.exp(v + 0.003 * (-1) ** k) for k, v in enumerate(ls)))
    curves = [curve("high", 1.6, -0.02, 0.02, 0.3), curve("mid", 1.2, -0.03, 0.02, 0.3),
              curve("low", 0.35, -0.01, 0.02, 0.3)]
    sp = StateSpace()
    predict(curves, TARGET, sp)
    assert sp.last_fit.kappa > 0.005 and sp.last_fit.c <= math.log(min(c.last for c in curves)) + 1e-12
    assert sp.last_fit.r == pytest.approx(0.003 ** 2, rel=0.6)


# -- the real AtS tables ------------------------------------------------------------------------------------------

def _scores(name: str, table: str, ratio: int) -> tuple[float, float]:
    path = CURVES / table
    if not path.exists():
        pytest.skip(f"{path} is not here (../shared/data)")
    full = read_table(path)
    truth = {c.name: c.values[-1] for c in full.curves}
    names = sorted(truth)
    pred = {p.name: p.predicted for p in predict(read_table(path, TARGET // ratio).curves, TARGET, name)}
    return pearcorr([pred[n] for n in names], [truth[n] for n in names]), relacc([pred[n] for n in names],
                                                                                [truth[n] for n in names])


def test_ats_reproduces_its_published_table_1():
    # Lin et al. 2024, Table 1 (results/tab1.txt): FLAN 1/8 90.9 / 93.6, 1/512 45.6 / 93.2
    assert _scores("ats", "flan.csv", 8) == pytest.approx((90.9, 93.6), abs=0.05)
    assert _scores("ats", "flan.csv", 512) == pytest.approx((45.6, 93.2), abs=0.05)
    assert _scores("final", "flan.csv", 8) == pytest.approx((60.9, 93.2), abs=0.05)      # SubTuning


def test_damoc_beats_ats_on_flan():
    for ratio, ats in ((8, 90.9), (512, 45.6)):
        pc, ra = _scores("damoc", "flan.csv", ratio)
        assert pc > ats + 1 and ra >= 93.2


# -- table errors -------------------------------------------------------------------------------------------------

HEAD = "config name,0,200,400,800,size,family\n"


def _write(tmp_path, text: str) -> Path:
    p = tmp_path / "t.csv"
    p.write_text(text)
    return p


@pytest.mark.parametrize("body, budget, needles", [
    ("a,5,4,3.5,3,1e6,X\nb,5,4,oops,3,1e6,X\n", None, ["t.csv:3", "'400'", "'oops' is not a number"]),
    ("a,5,4,3.5,3,1e6,X\na,5,4,3.5,3,1e6,X\n", None, ["t.csv:3", "'config name'", "already on line 2"]),
    ("a,5,4,,,1e6,X\n", None, ["t.csv:2", "'400'", "1 measured size"]),
    ("a,5,4,3.5,3,1e6,X\n", 100, ["budget 100 is below every", "smallest 200"]),
    ("a,5,4,3.5\n", None, ["t.csv:2", "4 cells, the header 7"]),
    ("a,5,4,-3.5,3,1e6,X\n", None, ["t.csv:2", "'400'", "not positive"]),
])
def test_bad_tables_name_the_row_and_column(tmp_path, body, budget, needles):
    with pytest.raises(DataError) as e:
        read_table(_write(tmp_path, HEAD + body), budget)
    for n in needles:
        assert n in str(e.value)


def test_bad_headers_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="empty"):
        read_table(_write(tmp_path, "\n\n"))
    with pytest.raises(DataError, match=r"column 'loss' is neither"):
        read_table(_write(tmp_path, "name,200,loss\na,1,2\n"))
    with pytest.raises(DataError, match="no training-set size columns"):
        read_table(_write(tmp_path, "name,size\na,1\n"))
    with pytest.raises(DataError, match="no models"):
        read_table(_write(tmp_path, HEAD))


def test_empty_cells_are_skipped_and_the_budget_cuts(tmp_path):
    t = read_table(_write(tmp_path, HEAD + "a,5,4,,3,1e6,X\nb,,4.5,4,3.6,,\n"), budget=800)
    a, b = t.curves
    assert a.sizes == (200.0, 800.0) and a.zero_shot == 5 and a.size == 1e6 and a.family == "X"
    assert b.sizes == (200.0, 400.0, 800.0) and b.zero_shot is None and b.size is None and b.family is None
    with pytest.raises(DataError, match=r"t.csv:2 \(field '400'\): model 'a' has 1 measured size"):
        read_table(t.path, budget=400)          # a's only other point is beyond that budget
    assert t.header_sizes == (0, 200, 400, 800)
    ranked = predict(t.curves, 3200, "damoc")      # curves on different grids
    assert sorted(p.rank for p in ranked) == [1, 2] and all(p.low <= p.predicted <= p.high for p in ranked)


# -- uncertainty --------------------------------------------------------------------------------------------------

def test_p_best_matches_the_normal_closed_form():
    # two normals: P(X1 < X2) = Phi((m2 - m1) / sqrt(s1^2 + s2^2))
    from statistics import NormalDist
    p = p_best([0.0, 0.5], [0.3, 0.4])
    assert p[0] == pytest.approx(NormalDist().cdf(0.5 / 0.5), abs=1e-4) and sum(p) == pytest.approx(1)
    # three identical candidates share evenly; a point mass below everyone wins by what lies under it
    assert p_best([1.0, 1.0, 1.0], [0.2, 0.2, 0.2]) == pytest.approx([1 / 3] * 3, abs=1e-4)
    q = p_best([0.0, 0.0], [0.0, 1.0])
    assert q == pytest.approx([0.5, 0.5], abs=1e-4)
    assert p_best([2.0, 1.0, 1.0], [0.0, 0.0, 0.0]) == [0.0, 0.5, 0.5]


def test_ats_interval_is_the_least_squares_prediction_interval():
    # three points off an exact line by +e, -2e, +e: s^2 = 6e^2 / (3 - 2); the interval at the target follows
    e = 0.01
    xs = [math.log(s) for s in SIZES[:3]]
    ys = [1.0 - 0.1 * x + d for x, d in zip(xs, (e, -2 * e, e))]
    c = Curve("a", SIZES[:3], tuple(math.exp(y) for y in ys))
    (p,) = predict([c], TARGET, "ats", level=0.9)
    xb = sum(xs) / 3
    sxx = sum((x - xb) ** 2 for x in xs)
    lt = math.log(TARGET)
    mean = sum(ys) / 3 - 0.1 * (lt - xb)             # the residuals are symmetric: the slope stays -0.1
    sd = math.sqrt(6 * e * e * (1 + 1 / 3 + (lt - xb) ** 2 / sxx))
    assert math.log(p.predicted) == pytest.approx(mean, abs=1e-9)
    assert math.log(p.high) - math.log(p.predicted) == pytest.approx(1.6448536 * sd, rel=1e-6)
    assert p.p_best == 1.0 and p.rank == 1


def test_higher_is_better_scores_round_trip():
    acc = [Curve("weak", SIZES[:4], (0.30, 0.35, 0.40, 0.45)), Curve("strong", SIZES[:4], (0.50, 0.55, 0.60, 0.65))]
    ranked = predict(acc, 3200, "final", higher_is_better=True)
    assert [p.name for p in ranked] == ["strong", "weak"]
    assert ranked[0].predicted == pytest.approx(0.65) and ranked[0].p_best == 1.0
    ranked = predict(acc, 25600, "ats", higher_is_better=True)
    assert ranked[0].name == "strong" and ranked[0].low <= ranked[0].predicted <= ranked[0].high < 1
    with pytest.raises(DataError, match="not below the ceiling"):
        predict([Curve("x", (1.0, 2.0), (0.5, 1.0))], 4, higher_is_better=True)


def test_api_errors():
    c = power_law("a", 5.0, 0.1)
    with pytest.raises(UnknownNameError) as e:
        predict([c], TARGET, "atss")
    assert "ats" in (e.value.hint or "")
    with pytest.raises(ConfigError, match="below the largest measured size"):
        predict([c], 100, "damoc")
    with pytest.raises(DataError, match="more than once"):
        predict([c, c], TARGET)
    with pytest.raises(DataError, match="needs 2"):
        predict([Curve("one", (200.0,), (3.0,))], TARGET, "ats")
    assert {"damoc", "ats", "final", "zero-shot"} <= set(PREDICTORS.names())


# -- the command --------------------------------------------------------------------------------------------------

def _cli(*args: str):
    from damoc.cli import cli
    return CliRunner().invoke(cli, list(args))


def test_cli_json_shape_and_ranking(tmp_path):
    rows = [f"m{i},{9 - i},{5 - 0.1 * i},{4.6 - 0.15 * i},{4.2 - 0.2 * i},{1e8 * (i + 1)},F" for i in range(4)]
    p = _write(tmp_path, HEAD + "\n".join(rows) + "\n")
    r = _cli("extrapolate", str(p), "--budget", "800", "--target", "1638400", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["predictor"] == "damoc" and d["budget"] == 800 and d["target"] == 1638400
    assert [x["rank"] for x in d["ranking"]] == [1, 2, 3, 4]
    assert set(d["ranking"][0]) == {"name", "predicted", "low", "high", "p_best", "rank"}
    assert d["ranking"][0]["name"] == "m3"                         # lowest and steepest
    preds = [x["predicted"] for x in d["ranking"]]
    assert preds == sorted(preds) and sum(x["p_best"] for x in d["ranking"]) == pytest.approx(1)
    human = _cli("extrapolate", str(p), "--budget", "400", "--predictor", "final")
    assert human.exit_code == 0 and "m3" in human.output and "P(best)" in human.output
    default_target = json.loads(_cli("extrapolate", str(p), "--budget", "400", "--json").output)["target"]
    assert default_target == 800


def test_cli_errors_exit_2_without_a_traceback(tmp_path):
    import subprocess
    import sys
    bad = _write(tmp_path, HEAD + "a,5,4,x,3,1e6,X\n")
    proc = subprocess.run([sys.executable, "-m", "damoc", "extrapolate", str(bad), "--budget", "800"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and ":2 (field '400')" in proc.stderr
    assert _cli("extrapolate", str(bad)).exit_code != 0           # --budget is required
