"""The library calls the app makes, in one place (each imported lazily: the app starts without touching them).

Screens call these from thread workers only (bridge.run_job), never on the UI thread. Nothing here loads a model:
runs are started as detached processes by `damoc.pipeline.api`, registry facts come from config.json and
safetensors headers.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from damoc.errors import DamocError
from damoc.settings import Settings


def _api(module: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise DamocError(f"{what} is not available in this build ({e})",
                         "update damoc; the rest of the app keeps working") from None


def pipeline() -> Any:
    return _api("damoc.pipeline.api", "running DaMoC")


def registry() -> Any:
    return _api("damoc.registry", "the model registry")


# -- registry ----------------------------------------------------------------------------------------

def registry_list(settings: Settings) -> list[Any]:
    return list(registry().RegistryStore(settings).list())


# -- runs ----------------------------------------------------------------------------------------------

def open_run(settings: Settings, run_id: str) -> Any:
    from damoc.pipeline.rundir import RunDir

    return RunDir.open(settings.runs_dir, run_id)


def leaderboard(rd: Any) -> Any:
    """The pipeline's Leaderboard of a run directory (ranking, gaps, too-close marks, exports)."""
    return pipeline().leaderboard(rd)


def leaderboard_rows(rd: Any) -> list[dict[str, Any]]:
    """The pipeline's leaderboard rows as dicts, best first (`name` added for the candidate)."""
    return [{"name": r["candidate"], **r} for r in leaderboard(rd).to_dict()["rows"]]


def _as_dict(obj: Any) -> dict[str, Any]:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    import dataclasses

    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    return dict(obj)


def cancel_run(settings: Settings, run_id: str) -> Any:
    return pipeline().cancel_run(settings, run_id)


def resume_run(settings: Settings, run_id: str) -> Any:
    return pipeline().resume_run(settings, run_id, detach=True)


def start_run(settings: Settings, config: Any) -> Any:
    return pipeline().start_run(settings, config, detach=True)


def plan_run(settings: Settings, config: Any) -> Any:
    return pipeline().plan_run(settings, config)


def handoff(settings: Settings, run_id: str) -> Any:
    return pipeline().handoff(settings, run_id)


def compare_runs(settings: Settings, a: str, b: str) -> Any:
    return pipeline().compare_runs(settings, a, b)


def export_dir(rd: Any) -> Path:
    return Path(rd.path) / "exports"
