"""File-system failures a user can cause or fix (a full disk, a read-only folder, a directory where a file should
be), as one-line `DamocError`s that name the path, the free space and what was needed. Used by the registry store
and the run API; `damoc.cli.common.run_cli` maps any other such OSError the same way."""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from damoc.errors import DamocError

SPACE_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class StorageError(DamocError):
    """A file could not be written or read for a reason of the file system, not of damoc."""


def _free(path: Path) -> int | None:
    p = Path(path)
    for cand in (p, *p.parents):
        try:
            return shutil.disk_usage(cand).free
        except OSError:
            continue
    return None


def _bytes(n: int | None) -> str:
    from damoc.registry.models import human_bytes

    return human_bytes(n)


def storage_error(e: OSError, path: str | Path | None = None, *, what: str = "write",
                  needed: int | None = None) -> StorageError:
    """The user-facing error for `e`, raised while trying to `what` `path` (e.filename wins when set)."""
    where = Path(e.filename) if getattr(e, "filename", None) else Path(path) if path else None
    shown = str(where) if where else "(unknown path)"
    if e.errno in SPACE_ERRNOS:
        free = _free(where) if where else None
        need = f", {_bytes(needed)} needed" if needed else ""
        return StorageError(f"no space left to {what} {shown} ({_bytes(free)} free{need})",
                            "free some disk space (or point DAMOC_HOME at a larger disk), then try again")
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StorageError(f"cannot {what} {shown}: {os.strerror(e.errno)}",
                            "make the folder writable, or point DAMOC_HOME at one that is (damoc locate)")
    if e.errno == errno.EISDIR:
        return StorageError(f"cannot {what} {shown}: it is a directory, a file was expected",
                            "move the directory away (damoc locate shows where damoc keeps its files)")
    if e.errno == errno.ENOTDIR:
        return StorageError(f"cannot {what} {shown}: a file is in the way of a folder on that path",
                            "move the file away (damoc locate shows where damoc keeps its files)")
    return StorageError(f"cannot {what} {shown}: {e.strerror or e}", "check the disk and the folder's permissions")


def is_storage_error(e: BaseException) -> bool:
    """True for the OSErrors `storage_error` explains (not e.g. a network error, which is also an OSError)."""
    return isinstance(e, OSError) and e.errno in (SPACE_ERRNOS | {errno.EROFS, errno.EACCES, errno.EPERM,
                                                                   errno.EISDIR, errno.ENOTDIR})
