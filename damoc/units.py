"""How damoc writes quantities for people (light: no imports). Every front end uses these, so a duration reads the
same in the app, `damoc runs`, `damoc attach` and `damoc run`."""
from __future__ import annotations


def fmt_duration(seconds: float | None) -> str:
    """A duration (a run's `RunDir.seconds()`, a stage, an ETA): `42s`, `1m32s`, `2h05m`; `-` when unknown."""
    if seconds is None:
        return "-"
    s = int(round(max(0.0, float(seconds))))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
