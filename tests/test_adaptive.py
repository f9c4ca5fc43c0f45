"""The adaptive budget (select.adaptive) in real runs on the test zoo: the smallest proxies first, a candidate whose
P(best) falls below select.p_drop stops there, and a run killed in the middle of a round resumes without redoing a
finished cell and takes the same decisions again."""
from __future__ import annotations

import os
import signal

from damoc.pipeline.cells.scoring import subset_of
from tests.helpers.runs import run_config, wait_run, wait_for as _wait_for

# p_drop 0.45 (the highest allowed): every candidate but the leader whose P(best) is under it stops after the
# first round, so the test zoo's near-random proxies still exercise a stop
ADAPTIVE = ["select.sizes=[0.25,0.5,1.0]", "select.adaptive=true", "select.p_drop=0.45", "compress.enabled=false",
            "prune.enabled=false", "select.budget=10"]



def _cells(plan, rd, name):
    from damoc.pipeline.cells import FinetuneCell

    return [(spec, rd.cell(spec.candidate, spec.stage)) for spec in plan.cells_of(name)
            if spec.kind == FinetuneCell.name]


def test_an_adaptive_run_stops_the_hopeless_after_the_first_round(zoo_env):
    from damoc.pipeline import api

    s = zoo_env["settings"]
    h = api.start_run(s, run_config(zoo_env, *ADAPTIVE))
    assert wait_run(s, h.run_id) == "finished"
    rd = api.open_run(s, h.run_id)
    from damoc.fsutil import read_json
    from damoc.pipeline.plan import Plan

    plan = Plan.from_dict(read_json(rd.path / "plan.json"))
    lb = api.leaderboard(rd)
    stopped = [r for r in lb.rows if r.status == "stopped"]
    assert stopped, [(r.candidate, r.status, r.p_best) for r in lb.rows]
    for r in stopped:
        assert "after share 0.25" in r.reason
        cells = _cells(plan, rd, r.candidate)
        assert all(c.done for spec, c in cells if subset_of(spec) <= 0.25)
        assert all(c.state == "skipped" and c.failure()["adaptive"] for spec, c in cells if subset_of(spec) > 0.25)
    leader = lb.rows[0]
    assert leader.status != "stopped" and leader.p_best is not None
    # stopped rows rank below every candidate that went on
    kept = [i for i, r in enumerate(lb.rows) if r.score is not None and r.status != "stopped"]
    assert max(kept) < min(i for i, r in enumerate(lb.rows) if r.status == "stopped")


def test_a_kill_mid_round_resumes_without_redoing_cells_and_decides_the_same(zoo_env):
    from damoc.fsutil import read_json
    from damoc.pipeline import api
    from damoc.pipeline.plan import Plan

    s = zoo_env["settings"]
    h = api.start_run(s, run_config(zoo_env, *ADAPTIVE))
    rd = api.open_run(s, h.run_id)
    _wait_for(lambda: (rd.path / "plan.json").is_file())
    plan = Plan.from_dict(read_json(rd.path / "plan.json"))
    first = [c for n in zoo_env["names"] for spec, c in _cells(plan, rd, n) if subset_of(spec) == 0.25]
    _wait_for(lambda: sum(c.done for c in first) >= 1)          # inside the first round
    done_before = {c.key: c.marker.stat().st_mtime_ns for c in first if c.done}
    os.killpg(int(rd.meta["pid"]), signal.SIGKILL)
    _wait_for(lambda: not rd.is_alive(), timeout=60)
    api.resume_run(s, h.run_id)
    assert wait_run(s, h.run_id) == "finished"
    for key, mtime in done_before.items():
        assert rd.cell(*key.split("/", 1)).marker.stat().st_mtime_ns == mtime, f"{key} was redone"
    resumed = {r.candidate: r.status for r in api.leaderboard(rd).rows}
    # the same config, uninterrupted, decides the same (P(best) is a seeded bootstrap of the same cells)
    h2 = api.start_run(s, run_config(zoo_env, *ADAPTIVE))
    assert wait_run(s, h2.run_id) == "finished"
    assert {r.candidate: r.status for r in api.leaderboard(api.open_run(s, h2.run_id)).rows} == resumed
