"""The `damoc` command in a subprocess, as a user runs it."""
from __future__ import annotations

import os
import subprocess
import sys


def damoc(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`python -m damoc ARGS` with this process's environment (DAMOC_HOME included) plus `env`."""
    return subprocess.run([sys.executable, "-m", "damoc", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
