"""Run directories written before the cell-kind refactor (issue 14) stay readable by the current code.

tests/fixtures/runs/ holds two runs made by commit cd927c1 on the test zoo's laws-qa task (a DaMoC run whose two
candidates with a Base were pruned, and a zero-shot run over the same three candidates), without model weights, and
the old code's `--json` outputs for them (`expected-*.json`; fixtures/runs/README.md says how they were made). The
absolute paths inside (the zoo, the dataset, the old DAMOC_HOME) point nowhere here: reading must not need them.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from damoc.events import RunStarted, StageStarted
from tests.helpers.cli import damoc

FIXTURE = Path(__file__).parent / "fixtures" / "runs"
DAMOC_RUN, ZERO_SHOT_RUN = "20261201-203326-f8d8", "20261201-203336-6dfa"


def expected(name: str) -> Any:
    return json.loads((FIXTURE / f"expected-{name}.json").read_text())


@pytest.fixture
def old_runs(settings) -> Path:
    """The fixture runs copied into this test's runs folder."""
    for run_id in (DAMOC_RUN, ZERO_SHOT_RUN):
        shutil.copytree(FIXTURE / run_id, settings.runs_dir / run_id)
    return settings.runs_dir


def keeps(new: Any, old: Any) -> bool:
    """`new` says everything `old` said, with the same values; it may say more (fields added since, such as a
    leaderboard row's P(best)): old runs stay readable, and newer readers may add facts."""
    if isinstance(old, dict):
        return isinstance(new, dict) and all(k in new and keeps(new[k], v) for k, v in old.items())
    if isinstance(old, list):
        return isinstance(new, list) and len(new) == len(old) and all(keeps(n, o) for n, o in zip(new, old))
    return new == old


def json_of(*args: str) -> Any:
    r = damoc(*args, "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def test_runs_lists_the_old_runs_with_their_status(old_runs):
    listed = json_of("runs")
    assert keeps(listed, expected("runs"))
    assert {r["run_id"]: r["status"] for r in listed} == {DAMOC_RUN: "finished", ZERO_SHOT_RUN: "finished"}


@pytest.mark.parametrize("run_id", [DAMOC_RUN, ZERO_SHOT_RUN])
def test_attach_gives_the_old_leaderboard(old_runs, run_id):
    """The same ranking, scores and leaderboard rows as the old code printed; only the run's folder moved."""
    old = expected(f"attach-{run_id}")
    got = json_of("attach", run_id)
    here = old_runs / run_id
    assert got["path"] == str(here)
    assert got["handoff"] == (str(here / "handoff") if old["handoff"] else old["handoff"])
    moved = {"path", "handoff"}
    assert keeps({k: v for k, v in got.items() if k not in moved}, {k: v for k, v in old.items() if k not in moved})


def test_library_reads_the_old_leaderboard_and_handoff(old_runs, settings):
    from damoc.pipeline import api

    lb = api.leaderboard(api.open_run(settings, DAMOC_RUN))
    old = expected(f"attach-{DAMOC_RUN}")
    assert lb.ranking == old["ranking"] and lb.winner == old["winner"]
    assert [r.candidate for r in lb.rows] == [r["candidate"] for r in old["leaderboard"]]
    # the hand-off is rebuilt from plan.json and config.json: the same files the old run wrote
    files = api.handoff(settings, DAMOC_RUN)
    assert files == {name: (FIXTURE / DAMOC_RUN / "handoff" / name).read_text() for name in files}
    assert sorted(files) == sorted(p.name for p in (FIXTURE / DAMOC_RUN / "handoff").iterdir())


def test_compare_the_old_runs(old_runs):
    assert keeps(json_of("compare", DAMOC_RUN, ZERO_SHOT_RUN), expected("compare"))


def test_resuming_a_finished_old_run_redoes_no_cell(old_runs, settings):
    from damoc.pipeline import api

    here = old_runs / DAMOC_RUN
    markers = {p: p.stat().st_mtime_ns for p in here.glob("cells/*/*/done.json")}
    assert len(markers) == 8                            # 3 data cells, 2 prune cells, 3 fine-tune cells
    out = json_of("run", "--resume", DAMOC_RUN)
    old = expected(f"attach-{DAMOC_RUN}")
    assert out["status"] == "finished" and out["ranking"] == old["ranking"]
    assert {p: p.stat().st_mtime_ns for p in here.glob("cells/*/*/done.json")} == markers
    events = api.open_run(settings, DAMOC_RUN).events()
    resumed = max(i for i, e in enumerate(events) if isinstance(e, RunStarted))
    assert events[resumed].resumed
    assert not [e.cell for e in events[resumed:] if isinstance(e, StageStarted)]
