"""How the live run view writes its cells: durations (the one rule), scores, gaps, stages, pruning, ETAs, and the
hand-off viewer it shares with the Runs screen."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual.screen import Screen

from damoc import facade
from damoc_tui.runstate import CandidateState
from damoc_tui.screens.modals import TextScreen

STATUS_STYLE = {"ok": "green", "finished": "green", "scored": "green", "running": "bold", "failed": "red",
                "cancelled": "yellow", "interrupted": "yellow", "skipped": "cyan", "queued": "dim", "waiting": "dim", "stopped": "cyan"}


def fmt_seconds(s: float | None) -> str:
    """The one format of a duration in the app (`damoc runs` and `damoc attach` use the same rule)."""
    return facade.fmt_duration(s)


def fmt_gap(gap: Any, close: bool, rank: Any) -> str:
    """`-0.667`, `≈-0.004` (too close to call), `lead`: three decimals, never cut (the column is sized to it)."""
    if not isinstance(gap, (int, float)):
        return ""
    return ("≈" if close else "") + (f"-{gap:.3f}" if gap else ("lead" if rank == 1 else ""))


def fmt_score(score: Any) -> str:
    """At most 6 characters whatever the metric's scale (F1 in 0..1, BERTScore+ROUGE in 0..100)."""
    if not isinstance(score, (int, float)):
        return ""
    a = abs(score)
    return f"{score:.1f}" if a >= 1000 else f"{score:.2f}" if a >= 10 else f"{score:.3f}" if a >= 1 else f"{score:.4f}"


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def stage_cell(cand: CandidateState) -> str:
    """What a candidate is doing: the running step with its progress, the failed stage, or done/queued."""
    running = [s for s in cand.stages.values() if s.status == "running"]
    if running:
        return running[-1].label()
    bad = [s for s in cand.stages.values() if s.status in ("failed", "cancelled")]
    if bad:
        return f"{bad[0].short.split('-')[0]} {bad[0].status}"
    if not cand.stages:
        return "queued"
    return "done" if cand.score is not None else "waiting"


def row_name(row: dict[str, Any]) -> str:
    return str(row.get("name") or row.get("candidate") or "")


def _prune_cell(row: dict[str, Any]) -> str:
    """`layers` ("2/24": pruned of before) and `merge` ("applied (rule)" / "skipped: why") of a leaderboard row,
    in 10 columns; the full merge text is in the detail pane."""
    merge = str(row.get("merge") or "")
    layers = str(row.get("layers") or "")
    if merge.startswith("skip"):
        return "skipped"
    if layers:
        return layers + (" merged" if merge.startswith("applied") else "")
    return merge


def _short_prune(text: str) -> str:
    """`skip: no Base (W_pre)` -> `skipped` in the table (the reason is in the detail pane)."""
    return "skipped" if text.startswith("skip") else text


def _eta_cell(cand: CandidateState, now: float) -> str:
    """Time left in the candidate's running step (fine-tune steps, evaluation batches) from its throughput."""
    running = [s for s in cand.stages.values() if s.status == "running" and s.total]
    eta = running[-1].eta(now) if running else None
    return fmt_seconds(eta) if eta is not None else ""


def show_handoff(screen: Screen[Any], run_id: str, files: dict[str, str], folder: Path) -> None:
    """The hand-off of the winner (the pipeline's file name -> text: LLaMA-Factory YAML, ms-swift command)."""
    text = "\n\n".join(f"# ---- {name}\n{value}" for name, value in files.items())
    screen.app.push_screen(TextScreen(f"Hand-off of the winner of {run_id}", text, save_path=folder / "handoff.txt"))
