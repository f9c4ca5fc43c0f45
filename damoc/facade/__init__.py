"""The one public surface of damoc for a front end: the terminal app imports this package (plus `damoc.events`,
`damoc.errors` and `damoc.settings`) and nothing else of damoc; an import-linter contract in pyproject.toml holds
it to that. Everything here delegates to the library: nothing is computed twice.

Nothing here imports torch or loads a model: runs happen in their own driver process (`start_run`), registry
facts come from config.json and safetensors headers.
"""
from __future__ import annotations

from pathlib import Path

from damoc.data import inspect_dataset
from damoc.events import Reporter
from damoc.facade.choices import (compressors, default_merge_rule, executor_unavailable, executors, filters,
                                  finetune_methods, merge_rules, metrics, modes)
from damoc.facade.runs import (ExportFormat, export_dir, export_leaderboard, fmt_duration, fmt_percent,
                               leaderboard_rows,
                               prune_preview, run_dirs)
from damoc.facade.schema import Setting, setting
from damoc.facade.text import dataset_lines, plan_lines, preflight_lines
from damoc.pipeline.api import (Comparison, Leaderboard, Plan, RunConfig, RunHandle, RunOverview, cancel_run,
                                compare_runs, handoff, leaderboard, load_config, open_run, plan_run, resume_run, run_overview,
                                start_run)
from damoc.pipeline.config import apply_override, save_config, validate_config
from damoc.pipeline.rundir import DATA_CANDIDATE, EventTail, RunDir
from damoc.registry import Candidate, RegistryStore, add_candidate
from damoc.registry.add import unchecked_note
from damoc.registry.hub import CheckResult
from damoc.registry.hub import check_online as _check_online
from damoc.registry.hub import pull
from damoc.registry.models import human_bytes, human_count
from damoc.registry.scan import ScanReport, scan
from damoc.settings import Settings


# -- the model registry ------------------------------------------------------------------------------------------

def registry_candidates(settings: Settings) -> list[Candidate]:
    """Every candidate with its capability computed from the files on this machine."""
    return RegistryStore(settings).list()


def remove_candidate(settings: Settings, name: str) -> str:
    """Remove a user entry or hide a built-in one: "removed" or "hidden" (model files are never deleted)."""
    return RegistryStore(settings).remove(name)


def scan_models(settings: Settings, folders: list[Path]) -> ScanReport:
    """Register the Chat/Base pairs found in the Hugging Face cache and in `folders`."""
    return scan(RegistryStore(settings), folders, hf_cache=True)


def check_online(settings: Settings, name: str | None) -> list[CheckResult]:
    """Confirm gated/size/licence facts on the hub, of one candidate or of all."""
    store = RegistryStore(settings)
    return _check_online(store, [store.get(name)] if name else store.list())


def build_demo_zoo(settings: Settings, reporter: Reporter | None = None, size: str | None = None) -> list[str]:
    """Build (once, cached) the offline demo zoo of the `zoo_size` setting and register it: the first step on a
    machine with no candidate yet. The models train in a subprocess (this process never imports torch for it),
    whose progress events reach `reporter`: minutes for `demo`, seconds for `test`. Returns the candidate names."""
    from damoc.pipeline.demo import ensure_zoo

    return [c.name for c in ensure_zoo(settings, size or settings.zoo_size, reporter)]


def pull_candidate(settings: Settings, name: str, reporter: Reporter) -> dict[str, str]:
    """Download a candidate's Chat and Base into the Hugging Face cache: role -> local folder."""
    return pull(settings, name, reporter=reporter)


__all__ = [
    "DATA_CANDIDATE", "Candidate", "CheckResult", "Comparison", "EventTail", "ExportFormat", "Leaderboard", "Plan",
    "RunConfig", "RunDir", "RunHandle", "RunOverview", "ScanReport", "Setting",
    "add_candidate", "apply_override", "build_demo_zoo", "cancel_run", "check_online", "compare_runs", "compressors", "dataset_lines",
    "default_merge_rule", "executor_unavailable", "executors", "export_dir", "export_leaderboard", "filters", "finetune_methods", "fmt_duration", "fmt_percent", "handoff",
    "human_bytes", "human_count", "inspect_dataset", "leaderboard", "leaderboard_rows", "load_config", "merge_rules", "metrics",
    "modes", "open_run", "plan_lines", "plan_run", "preflight_lines", "prune_preview", "pull_candidate",
    "registry_candidates", "remove_candidate", "resume_run", "run_dirs", "run_overview", "save_config",
    "scan_models", "setting", "start_run", "unchecked_note", "validate_config",
]
