"""The Ray executor on Ray's own test cluster on this machine (`ray.cluster_utils.Cluster`: a head and a second
node, one CPU each): a DaMoC run of the test zoo ranks as the local executor does, survives its second node being
removed mid-run (the lost task is retried, no finished cell is redone), cancels and resumes; a node that cannot see
the run directory stops the run with the reason. Skipped without Ray (pip install 'damoc[cluster]')."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from damoc.events import RunFinished, StageFinished, StageStarted
from damoc.fsutil import read_json
from damoc.pipeline.plan import Plan
from tests.helpers.runs import run_config, wait_run, wait_for as _wait_for

ray = pytest.importorskip("ray", reason="the Ray executor needs pip install 'damoc[cluster]'")
pytestmark = pytest.mark.slow

# the cheapest cells of the test zoo that still make a DaMoC run: filter, then prune (a Chat with a Base) or not
QUICK = ["compress.enabled=false", "dataset.max_train=48", "dataset.max_test=8", "prune.calib_samples=4"]



def _owner(cell) -> dict:
    try:
        return json.loads(cell.running_marker.read_text())
    except (OSError, ValueError):
        return {}


def _names(env) -> list[str]:
    with_base = sorted((c for c in env["zoo"] if c.base_path), key=lambda c: c.layers)
    return [with_base[0].name, env["no_base"].name]           # the shallowest Chat with a Base prunes quickest


def _ok_finishes(rd) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in rd.events():
        if isinstance(e, StageFinished) and e.status == "ok" and e.cell.count("/") == 1:
            out[e.cell] = out.get(e.cell, 0) + 1
    return out


def test_ray_run_matches_local_survives_a_lost_node_cancels_and_resumes(zoo_env):
    from ray.cluster_utils import Cluster

    from damoc.pipeline import api

    s = zoo_env["settings"]
    names = _names(zoo_env)
    local = api.start_run(s, run_config(zoo_env, *QUICK, names=names))
    assert wait_run(s, local.run_id) == "finished"
    want = [(r.candidate, r.score) for r in api.leaderboard(api.open_run(s, local.run_id)).rows]

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    n2 = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        cfg = run_config(zoo_env, *QUICK, "executor.kind=ray", f"executor.address={cluster.address}", names=names)
        h = api.start_run(s, cfg)
        rd = api.open_run(s, h.run_id)
        plan = Plan.from_dict(read_json(rd.path / "plan.json"))
        cells = [rd.cell(c.candidate, c.stage) for n in names for c in plan.cells_of(n)]
        # 1) the second node is removed while one of its candidate cells runs: Ray retries the task on the head
        _wait_for(lambda: any(c.state == "running" and _owner(c).get("ray_node") == n2.node_id for c in cells))
        lost = next(c for c in cells if c.state == "running" and _owner(c).get("ray_node") == n2.node_id)
        cluster.remove_node(n2)
        # 2) once the retried task runs the lost candidate on the head, cancel the run; then resume it to the end
        again = [c for c in cells if c.candidate == lost.candidate]
        _wait_for(lambda: any(c.state == "running" and _owner(c).get("ray_node") not in (None, n2.node_id)
                              for c in again))
        api.cancel_run(s, h.run_id)
        assert wait_run(s, h.run_id) == "cancelled"
        done_before = {c.key: c.marker.stat().st_mtime_ns for c in cells if c.done}
        api.resume_run(s, h.run_id)
        assert wait_run(s, h.run_id) == "finished"
    finally:
        cluster.shutdown()
    assert all(c.done for c in cells) and lost.result()["ray_node"] != n2.node_id
    for key, mtime in done_before.items():           # a resume redoes nothing finished
        assert rd.cell(*key.split("/", 1)).marker.stat().st_mtime_ns == mtime, f"{key} was redone"
    assert all(n == 1 for n in _ok_finishes(rd).values()), _ok_finishes(rd)    # nothing finished twice
    for c in cells + [rd.cell("_data", "prepare")]:
        r = c.result()
        assert r["node"] and r["ray_node"] and "gpu" in r, f"{c.key} does not record where it ran"
    got = [(r.candidate, r.score) for r in api.leaderboard(rd).rows]
    assert got == want                                # the same ranking and scores as the local executor


def _unshare_works() -> bool:
    return bool(shutil.which("unshare")) and subprocess.run(["unshare", "-m", "true"], capture_output=True
                                                            ).returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="needs a private mount namespace (unshare -m, root) to give one "
                                                "node its own runs folder")
def test_a_node_that_cannot_see_the_run_directory_stops_the_run_naming_it(zoo_env):
    """The only node with CPUs runs in a mount namespace where the runs folder is an empty tmpfs: what a node with
    a local folder where the shared mount should be sees. Its first task fails the storage check; the run fails
    with the node and what to do."""
    from ray.cluster_utils import Cluster

    from damoc.pipeline import api

    s = zoo_env["settings"]
    runs = s.runs_dir
    runs.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    ray_bin = str(Path(sys.executable).parent / "ray")
    node = subprocess.Popen(["unshare", "-m", "sh", "-c", f"mount -t tmpfs tmpfs '{runs}' && exec '{ray_bin}' start "
                             f"--address '{cluster.address}' --num-cpus 1 --block"],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "DAMOC_NODE": "masked-node"})
    try:
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        try:
            _wait_for(lambda: sum(1 for n in ray.nodes() if n["Alive"]) == 2, timeout=60, poll=0.25)
        finally:
            ray.shutdown()
        cfg = run_config(zoo_env, *QUICK, "executor.kind=ray", f"executor.address={cluster.address}",
                         names=_names(zoo_env)[:1])
        h = api.start_run(s, cfg)
        assert wait_run(s, h.run_id, timeout=120) == "failed"
        rd = api.open_run(s, h.run_id)
    finally:
        os.killpg(node.pid, signal.SIGTERM)
        node.wait(timeout=30)
        cluster.shutdown()
    end = [e for e in rd.events() if isinstance(e, RunFinished)][-1]
    assert "cannot see the run directory" in end.reason and str(rd.path) in end.reason
    assert "DAMOC_HOME" in end.reason and "NFS" in end.reason         # what to do
    assert not any(isinstance(e, StageStarted) for e in rd.events())   # nothing ran anywhere
