"""A scripted run directory for UI tests: the same files a real driver writes (config.json, run.json, plan.json built
from the pipeline's own Plan/CellSpec classes, events.jsonl through StageTracker, done.json cell markers), written
step by step so a test can watch the app follow it. The pipeline's real `leaderboard` reads it.

The end-to-end tests (test_e2e.py) launch real runs on the test zoo; this is for fast, deterministic screens.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from damoc.events import CandidateScored, Log, RunFinished, RunStarted, StageTracker
from damoc.fsutil import atomic_write_json
from damoc.pipeline.plan import CandidatePlan, CellSpec, Plan
from damoc.pipeline.recipes import StageDecision
from damoc.pipeline.rundir import RunDir

T0 = 1_790_000_000.0          # fixed clock: snapshots show the same durations on every machine


@dataclass
class ScriptedRun:
    settings: Any
    run_id: str = "20260101-120000-abcd"
    candidates: list[str] = field(default_factory=lambda: ["alpha-chat", "bravo-chat", "charlie-chat"])
    scores: dict[str, float] = field(default_factory=lambda: {"alpha-chat": 0.61, "bravo-chat": 0.74,
                                                              "charlie-chat": 0.52})
    no_base: tuple[str, ...] = ("charlie-chat",)
    mode: str = "damoc"
    steps: int = 20
    now: float = T0
    per_item: bool = False     # write each cell's per-item scores (the leaderboard then computes P(best))

    def __post_init__(self) -> None:
        config = {"mode": self.mode, "ft": "full", "variant": "chat", "candidates": list(self.candidates),
                  "seeds": [0], "label": "scripted", "dataset": {"train": "/data/pubmedqa/train.jsonl"},
                  "leaderboard": {"tolerance": 0.01}}
        self.rd = RunDir.create(self.settings.runs_dir, config, run_id=self.run_id,
                                meta={"mode": self.mode, "candidates": list(self.candidates), "label": "scripted",
                                      "dataset": "/data/pubmedqa/train.jsonl"})
        cands, cells = [], [CellSpec("_data", "prepare", "prepare")]
        if self.mode == "damoc":
            cells += [CellSpec("_data", "filter", "filter"), CellSpec("_data", "compress", "compress")]
        for name in self.candidates:
            merge = name not in self.no_base
            stages = [StageDecision("prune", merge, "" if merge else "pruning skipped: no Base (W_pre)"),
                      StageDecision("finetune", True), StageDecision("evaluate", True)]
            cands.append(CandidatePlan(name=name, chat_path=f"/models/{name}", base_path=None,
                                       model_path=f"/models/{name}", merge_supported=merge,
                                       merge_reason="" if merge else "pruning skipped: no Base (W_pre)",
                                       stages=stages))
            if merge and self.mode == "damoc":
                cells.append(CellSpec(name, "prune", "prune"))
            cells.append(CellSpec(name, "finetune-full-s0", "finetune", method="full", seed=0))
        self.plan = Plan(mode=self.mode, config=config, candidates=cands, data=[], cells=cells)
        atomic_write_json(self.rd.path / "plan.json", self.plan.to_dict())

    # -- the driver's side ----------------------------------------------------------------------------------
    def tick(self, seconds: float = 1.0) -> float:
        self.now += seconds
        return self.now

    def _tracker(self, candidate: str, stage: str, cell: str | None = None) -> StageTracker:
        return StageTracker(self.rd, stage, run_id=self.run_id, candidate=candidate, cell=cell)

    def start(self, alive_pid: int | None = None, resumed: bool = False) -> None:
        """RunStarted; `alive_pid` (e.g. this test's pid) makes `RunDir.is_alive()` true, as a live driver does."""
        self.rd.set_driver_pid(alive_pid if alive_pid is not None else os.getpid())
        self.rd.emit(RunStarted(run_id=self.run_id, t=self.tick(0), mode=self.mode, candidates=list(self.candidates),
                                config=self.rd.config, pid=os.getpid(), resumed=resumed))

    def data_stages(self) -> None:
        for stage in (["prepare", "filter", "compress"] if self.mode == "damoc" else ["prepare"]):
            cell = self.rd.cell("_data", stage)
            cell.prepare()
            tr = self._tracker("_data", stage, cell=f"_data/{stage}").start(total=10)
            for i in range(1, 11):
                tr.progress(i)
            cell.mark_done(seconds=2.0)
            tr.finish("ok")

    def prune(self, name: str) -> None:
        if name in self.no_base or self.mode != "damoc":
            return
        cell = self.rd.cell(name, "prune")
        cell.prepare()
        tr = self._tracker(name, "prune", cell=f"{name}/prune").start()
        summary = {"layers_before": 4, "layers_after": 3, "pruned": [2], "merge_rule": "paper", "seconds": 3.0}
        cell.mark_done(**summary)
        tr.finish("ok", **{k: v for k, v in summary.items() if not isinstance(v, list)})

    def finetune_steps(self, name: str, upto: int) -> StageTracker:
        """Start (or continue) the fine-tune of `name` up to step `upto`: progress and train/loss events."""
        if not hasattr(self, "_ft"):
            self._ft: dict[str, tuple[StageTracker, StageTracker]] = {}
        if name not in self._ft:
            self.rd.cell(name, "finetune-full-s0").prepare()
            outer = self._tracker(name, "finetune-full-s0", cell=f"{name}/finetune-full-s0").start()
            inner = self._tracker(name, "finetune", cell=f"{name}/finetune-full-s0/finetune").start(total=self.steps)
            self._ft[name] = (outer, inner)
        outer, inner = self._ft[name]
        for step in range(inner.done + 1, upto + 1):
            inner.progress(step)
            inner.metric("train/loss", 3.0 / (1 + step * 0.3) + 0.05 * (step % 3), step=step)
        return inner

    def finish_candidate(self, name: str) -> None:
        self.finetune_steps(name, self.steps)
        outer, inner = self._ft[name]
        inner.finish("ok")
        score = self.scores[name]
        summary = {"score": score, "stderr": 0.02, "metric": "squad_f1", "method": "full", "seed": 0,
                   "train_seconds": 40.0, "eval_seconds": 5.0, "steps": self.steps, "seconds": 45.0}
        cell = self.rd.cell(name, "finetune-full-s0")
        if self.per_item:         # 50 test items scoring 1 at a rate of the score: a deterministic, real bootstrap
            from damoc.pipeline.cells.scoring import PER_ITEM_FILE

            hits = round(score * 50)
            atomic_write_json(cell.path / PER_ITEM_FILE, {"metric": "squad_f1",
                                                          "per_item": [1.0] * hits + [0.0] * (50 - hits)})
        cell.mark_done(**summary)
        outer.finish("ok", **summary)
        self.rd.emit(CandidateScored(run_id=self.run_id, candidate=name, metric="squad_f1", score=score,
                                     stderr=0.02))
        self.rd.emit(Log(run_id=self.run_id, cell=f"{name}/finetune-full-s0", message=f"{name} scored {score}"))

    def finish(self, status: str = "ok", reason: str = "") -> None:
        self.rd.emit(RunFinished(run_id=self.run_id, t=self.tick(60), status=status, reason=reason,  # type: ignore
                                 seconds=self.now - T0))
        self.rd.update_meta(pid=None, seconds=self.now - T0)

    def complete(self) -> "ScriptedRun":
        """A whole finished run."""
        self.start()
        self.data_stages()
        for name in self.candidates:
            self.prune(name)
            self.finish_candidate(name)
        self.finish()
        return self
