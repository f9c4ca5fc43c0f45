"""Learning curves in the pipeline: proxies on nested subsets of the filtered set, a curve predictor ranking by
the forecast at the whole training set, and P(best) on every row, in a real run on the test zoo."""
from __future__ import annotations

import json

from damoc.pipeline.cells.samples import ORDER_FILE, nested_subset, read_samples_jsonl
from tests.helpers.runs import run_config as _config, wait_run as _wait

CURVE = ["select.sizes=[0.25,0.5,1.0]", "select.predictor=damoc", "select.adaptive=false", "compress.enabled=false"]


def test_plan_has_one_proxy_per_size_reading_the_filters_order(zoo_env):
    from damoc.pipeline.plan import make_plan

    plan = make_plan(zoo_env["settings"], _config(zoo_env, *CURVE), with_preflight=False)
    name = zoo_env["names"][0]
    stages = [c.stage for c in plan.cells_of(name) if c.kind == "finetune"]
    assert stages == ["finetune-full-s0-p25", "finetune-full-s0-p50", "finetune-full-s0"]
    cell = next(c for c in plan.cells_of(name) if c.stage == "finetune-full-s0-p25")
    assert cell.inputs["order"] == "_data/filter" and cell.params["subset"] == 0.25
    full = next(c for c in plan.cells_of(name) if c.stage == "finetune-full-s0")
    assert "subset" not in full.params            # the whole filtered set: the cell is planned as before


def test_nested_subsets_are_prefixes_of_one_order():
    from damoc.data.sample import Sample

    samples = [Sample(id=f"s{i}", question=f"q{i}", answer="a") for i in range(20)]
    order = [f"s{i}" for i in (7, 3, 19, 0, 11, 2, 5, 8, 13, 1, 4, 6, 9, 10, 12, 14, 15, 16, 17, 18)]
    quarter, half = (nested_subset(samples, f, order) for f in (0.25, 0.5))
    assert {s.id for s in quarter} == set(order[:5]) and {s.id for s in quarter} < {s.id for s in half}
    assert [s.id for s in half] == sorted((s.id for s in half), key=lambda i: int(i[1:]))   # file order kept
    hashed = [nested_subset(samples, f, None) for f in (0.25, 0.5)]
    assert {s.id for s in hashed[0]} < {s.id for s in hashed[1]}


def test_a_curve_run_ranks_by_the_forecast_with_p_best(zoo_env):
    from damoc.pipeline import api

    s = zoo_env["settings"]
    h = api.start_run(s, _config(zoo_env, *CURVE))
    assert _wait(s, h.run_id) == "finished"
    rd = api.open_run(s, h.run_id)
    order = json.loads((rd.cell("_data", "filter").path / ORDER_FILE).read_text())
    kept = read_samples_jsonl(rd.cell("_data", "filter").path / "train.jsonl")
    assert sorted(order) == sorted(k.id for k in kept)
    lb = api.leaderboard(rd)
    rows = [r for r in lb.rows if r.score is not None]
    assert len(rows) == 3
    for r in rows:
        sizes = [n for n, _ in r.curve["full"]]
        assert sizes == sorted(sizes) and len(sizes) == 3 and sizes[-1] == len(kept)
        assert r.measured == r.curve["full"][-1][1]                 # the largest subset is the measured score
        assert r.predicted_low <= r.score <= r.predicted_high       # ranked by the forecast, inside its interval
    assert sum(r.p_best for r in rows) == 1.0 or abs(sum(r.p_best for r in rows) - 1.0) < 1e-9
    d = lb.to_dict()
    assert {"p_best", "measured", "predicted_low", "predicted_high", "curve"} <= set(d["rows"][0])
