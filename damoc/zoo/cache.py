"""Recipe-hash cache folders with atomic publication.

A pool or task set is built into a hidden temp folder next to its final place and renamed into place only when
complete, so an interrupted build never leaves a half-written cache. A file lock keeps two processes (parallel test
sessions, say) from building the same recipe twice; leftovers of interrupted builds are removed under the lock.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from damoc.errors import DamocError
from damoc.fsutil import read_json

MANIFEST = "manifest.json"


def read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return read_json(Path(folder) / MANIFEST)
    except (NotADirectoryError, PermissionError):
        return None


def cached_build(folder: Path, build: Callable[[Path], Any]) -> dict[str, Any]:
    """The manifest of `folder`, building it with `build(tmp_folder)` first when absent. `build` must write
    `MANIFEST` into the temp folder last."""
    from filelock import FileLock

    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is not None:
        return manifest
    parent = folder.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DamocError(f"cannot create {parent}: {e.strerror}", "pass --out to a writable folder") from e
    with FileLock(str(parent / f".{folder.name}.lock")):
        manifest = read_manifest(folder)
        if manifest is not None:          # another process built it while we waited
            return manifest
        for stale in parent.glob(f".tmp-{folder.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if folder.exists():               # a folder without a manifest is not ours to trust
            shutil.rmtree(folder)
        tmp = parent / f".tmp-{folder.name}-{os.getpid()}"
        tmp.mkdir()
        try:
            build(tmp)
            if not (tmp / MANIFEST).is_file():
                raise DamocError(f"internal: build of {folder.name} wrote no manifest")
            os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return read_json(folder / MANIFEST)
