"""The local executor and the placement the driver gives it: as many CPU workers as the cores allow for the threads
each uses (largest candidates first, sharing one candidate list), one per GPU, serial where only one fits; the
storage check every fleet worker makes first; and what `--executor ray` says without Ray installed.

Whole runs through the parallel placement are in tests/test_executor_ray.py (compared with Ray) and every run test
of the suite (it is the default on a 2-core machine)."""
from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest

from damoc.pipeline.config import ExecutorSection, RunConfig
from damoc.pipeline.driver import Placement
from damoc.pipeline.executors import EXECUTORS, WorkerJob, unavailable
from damoc.pipeline.executors.local import LocalExecutor
from damoc.pipeline.plan import CandidatePlan, Plan


def _plan(sizes: dict[str, int], *, threads: int = 0, device: str = "cpu", free: int | None = None,
          peaks: dict[str, int] | None = None) -> Plan:
    cfg = RunConfig(device=device, threads=threads).to_dict()
    cands = [CandidatePlan(n, "/m/" + n, None, "/m/" + n, parameters=p) for n, p in sizes.items()]
    pf = None
    if free is not None:
        pf = {"candidates": [{"name": n, "memory": {"full_ft": {"total": b}, "lora_ft": None}}
                             for n, b in (peaks or {}).items()],
              "totals": {"memory_available_bytes": free}}
    return Plan(mode="damoc", config=cfg, candidates=cands, data=[], cells=[], preflight=pf)


TINY = {"small": 500_000, "big": 2_000_000, "mid": 1_000_000}


def test_placement_fills_the_cores_largest_first():
    p = Placement.of(_plan(TINY), ExecutorSection(), [], cores=2)
    assert (p.pool, p.slots, p.threads) == ("slots", 2, 1)          # two one-thread workers on two cores
    assert p.order == ["big", "mid", "small"]
    assert Placement.of(_plan(TINY), ExecutorSection(), [], cores=8).slots == 3      # never more than candidates
    # one core, a fixed thread count that takes them all, or workers: 1: the serial pool (one import per run)
    for plan, sec, cores in ((_plan(TINY), ExecutorSection(), 1), (_plan(TINY, threads=2), ExecutorSection(), 2),
                             (_plan(TINY), ExecutorSection(workers=1), 2)):
        assert (Placement.of(plan, sec, [], cores=cores).pool, Placement.of(plan, sec, [], cores=cores).slots) \
            == ("all", 1)
    # large candidates (torch's own threads): serial on CPU
    big = _plan({"a": 7_000_000_000, "b": 8_000_000_000})
    assert (Placement.of(big, ExecutorSection(), [], cores=16).pool, Placement.of(big, ExecutorSection(), [],
                                                                                 cores=16).threads) == ("all", 0)
    # GPUs and Ray: one worker (task) per candidate
    assert Placement.of(_plan(TINY, device="auto"), ExecutorSection(), ["0", "1"], cores=2).pool == "candidate"
    assert Placement.of(_plan(TINY), ExecutorSection(kind="ray"), [], cores=2).pool == "candidate"
    assert Placement.of(_plan(TINY), ExecutorSection(pool="all"), [], cores=2).slots == 1


def test_placement_keeps_the_workers_within_the_free_memory():
    gb = 10**9
    plan = _plan(TINY, free=5 * gb, peaks={"big": 3 * gb, "mid": 2 * gb, "small": 1 * gb})
    assert Placement.of(plan, ExecutorSection(), [], cores=8).slots == 2     # 3 + 2 fit in 5, + 1 does not
    plan = _plan(TINY, free=2 * gb, peaks={"big": 3 * gb, "mid": 2 * gb})
    assert Placement.of(plan, ExecutorSection(), [], cores=8).slots == 1


def test_workers_of_a_round_claim_each_candidate_once(tmp_path):
    """The O_EXCL claim that lets CPU slots share one candidate list: 8 racing claimers, every name taken once."""
    from damoc.pipeline.rundir import RunDir
    from damoc.pipeline.worker import claim

    rd = RunDir(tmp_path / "run")
    rd.path.mkdir()
    names = [f"c{i}" for i in range(20)]
    taken: dict[str, list[str]] = {}
    lock = threading.Lock()

    def take(job: str) -> None:
        for n in names:
            if claim(rd, "round1", n, job):
                with lock:
                    taken.setdefault(n, []).append(job)

    threads = [threading.Thread(target=take, args=(f"slot-{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == sorted(names) and all(len(v) == 1 for v in taken.values())
    assert json.loads((rd.path / "claims" / "round1" / "c0").read_text())["job"] == taken["c0"][0]
    assert claim(rd, "round2", "c0", "slot-1")        # a new round (a retry) starts with every candidate free


def test_cpu_slots_run_workers_side_by_side(tmp_path):
    """Two CPU slots: two real subprocesses overlap, the third job waits for a free slot; no GPU is set."""
    class Probe(WorkerJob):
        def argv(self, run_dir, python=sys.executable):
            code = ("import os, time, json; t0 = time.time(); time.sleep(0.8); "
                    "print(json.dumps([os.environ.get('CUDA_VISIBLE_DEVICES'), t0, time.time()]))")
            return [python, "-c", code]

    res = LocalExecutor(tmp_path, slots=2, poll=0.05).run([Probe(f"j{i}") for i in range(3)])
    spans = {r.job.name: json.loads(Path(r.log).read_text().strip().splitlines()[-1]) for r in res}
    assert all(s[0] is None for s in spans.values())
    assert spans["j0"][1] < spans["j1"][2] and spans["j1"][1] < spans["j0"][2]         # j0 and j1 overlapped
    assert spans["j2"][1] >= min(spans["j0"][2], spans["j1"][2]) - 0.05


def test_worker_job_argv_carries_the_placement(tmp_path):
    job = WorkerJob("slot-1", ["a", "b"], claim="tok", threads=1, storage_token="s3")
    argv = job.argv(tmp_path, "py")
    assert argv[:4] == ["py", "-m", "damoc.pipeline.worker", str(tmp_path)]
    for flag, value in (("--job", "slot-1"), ("--claim", "tok"), ("--threads", "1"), ("--storage-token", "s3"),
                        ("--candidates", "a,b")):
        assert argv[argv.index(flag) + 1] == value


def test_storage_check_names_the_node_and_what_to_do(tmp_path, monkeypatch):
    from damoc.pipeline.executors.base import STORAGE_FILE
    from damoc.pipeline.worker import check_storage

    monkeypatch.setenv("DAMOC_NODE", "gpu-box-2")
    run = tmp_path / "run"
    assert "node gpu-box-2 cannot see the run directory" in check_storage(run, "t1")
    run.mkdir()
    (run / "plan.json").write_text("{}")
    (run / STORAGE_FILE).write_text(json.dumps({"token": "other"}))
    assert "sees another folder" in check_storage(run, "t1") and "gpu-box-2" in check_storage(run, "t1")
    (run / STORAGE_FILE).write_text(json.dumps({"token": "t1"}))
    assert check_storage(run, "t1") == ""
    assert not list((run / "logs").iterdir())          # the write probe leaves nothing behind


def test_executors_are_registered_and_ray_says_how_to_install_it(monkeypatch):
    import importlib.util

    from damoc.errors import ConfigError
    from damoc.pipeline.config import validate_config
    from damoc.pipeline.executors.base import Executor

    assert EXECUTORS.names() == ["local", "ray"] and issubclass(EXECUTORS.get("local"), Executor)
    with pytest.raises(ConfigError, match="did you mean ray"):
        validate_config({"executor": {"kind": "rya"}})
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    assert "pip install 'damoc[cluster]'" in unavailable("ray")
    with pytest.raises(ConfigError, match=r"pip install 'damoc\[cluster\]'"):
        validate_config({"executor": {"kind": "ray"}})
