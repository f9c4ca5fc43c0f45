"""The CLI basics, import hygiene (in a subprocess) and packaging data."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers.cli import damoc

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_commands():
    p = damoc("--help")
    assert p.returncode == 0
    for cmd in ("locate", "data", "zoo", "registry", "filter", "compress", "prune", "run", "demo", "tui"):
        assert cmd in p.stdout


def test_locate_uses_damoc_home(isolated_home):
    p = damoc("locate", "--json")
    assert p.returncode == 0
    locs = json.loads(p.stdout)
    assert locs["home"] == str(isolated_home) and locs["runs"] == str(isolated_home / "runs")
    assert damoc("locate", "runs").stdout.strip() == str(isolated_home / "runs")


def test_data_inspect_json_and_errors(tmp_path):
    good = tmp_path / "g.jsonl"
    good.write_text('{"question": "a b", "answer": "c"}\n')
    p = damoc("data", "inspect", str(good), "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["samples"] == 1
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"question": "a", "answer": "c"}\n{"question": \n')
    p = damoc("data", "inspect", str(bad))
    assert p.returncode == 1 and "line 2" in p.stdout and "invalid JSON" in p.stdout
    p = damoc("data", "inspect", str(tmp_path / "missing.jsonl"))
    assert p.returncode != 0


def test_import_hygiene():
    code = ("import sys, damoc, damoc.cli, damoc.events, damoc.data, damoc.pipeline.rundir, damoc.settings\n"
            "bad = [m for m in ('torch', 'transformers', 'textual', 'damoc_tui', 'peft', 'bert_score') "
            "if m in sys.modules]\n"
            "assert not bad, bad\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    # the library never imports the TUI package, anywhere
    offenders = [str(f) for f in (ROOT / "damoc").rglob("*.py")
                 if "damoc_tui" in f.read_text() and f.name != "tui.py"]
    assert not offenders, offenders


def test_tui_package_does_not_import_torch():
    p = subprocess.run([sys.executable, "-c", "import sys, damoc_tui; assert 'torch' not in sys.modules"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
