"""Runs as a front end handles them: the run directories, their leaderboards and exports, and the pruning outlook
of a config before it is planned."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from damoc.fsutil import atomic_write_text
from damoc.pipeline.api import leaderboard
from damoc.pipeline.config import RunConfig
from damoc.pipeline.recipes import CandidateFacts, StageDecision, prune_decision
from damoc.pipeline.rundir import RunDir, list_runs
from damoc.registry.models import Candidate
from damoc.settings import Settings
from damoc.units import fmt_duration  # noqa: F401  (the facade's name for it)

ExportFormat = Literal["json", "csv", "md"]


def fmt_percent(p: float | None) -> str:
    """A probability (P(best)) as a whole percent: never 0 or 100 unless it is (a 0.4% chance is not none); the
    one format of the CLI's `win%` column and the app's."""
    if p is None:
        return ""
    if 0 < p < 0.005:
        return "<1"
    if 0.995 <= p < 1:
        return ">99"
    return f"{100 * p:.0f}"


def run_dirs(settings: Settings) -> list[RunDir]:
    """Every run directory, oldest first."""
    return list_runs(settings.runs_dir)


def export_dir(rd: RunDir) -> Path:
    return rd.path / "exports"


def leaderboard_rows(rd: RunDir) -> list[dict[str, Any]]:
    """The pipeline's leaderboard rows as dicts, best first (`name` added for the candidate)."""
    return [{"name": r["candidate"], **r} for r in leaderboard(rd).to_dict()["rows"]]


def export_leaderboard(rd: RunDir, fmt: ExportFormat) -> Path:
    """Write the leaderboard as JSON, CSV or Markdown under `<run>/exports/` (what the pipeline's own exports
    hold) and return the file."""
    lb = leaderboard(rd)
    text = {"json": lb.to_json, "csv": lb.to_csv, "md": lb.to_markdown}[fmt]()
    path = export_dir(rd) / f"leaderboard.{fmt}"
    atomic_write_text(path, text if text.endswith("\n") else text + "\n")
    return path


def prune_preview(config: RunConfig, candidates: list[Candidate]) -> list[tuple[str, StageDecision]]:
    """The planner's pruning decision for each candidate (registry entries already read), before the run is
    planned: what the plan's `skipped` list will say about pruning."""
    return [(c.name, prune_decision(config, CandidateFacts(c.name, has_base=c.base is not None,
                                                           merge_supported=c.merge_supported,
                                                           merge_reason=c.merge_reason)))
            for c in candidates]
