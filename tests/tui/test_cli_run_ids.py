"""Issue 17 items 8 and 13 on the CLI side: `damoc runs` never cuts a run id at 80 columns and writes durations by
the app's rule; `damoc attach` takes `latest` and a unique prefix (the library's one resolver)."""
from __future__ import annotations

import json

from damoc.facade import fmt_duration
from tests.helpers.cli import damoc


def test_one_duration_rule():
    assert [fmt_duration(s) for s in (None, 0, 59.6, 81, 92, 3600 + 5 * 60)] == ["-", "0s", "1m00s", "1m21s",
                                                                                 "1m32s", "1h05m"]


def test_runs_keeps_the_id_whole_and_attach_takes_latest_and_a_prefix(scripted):
    old = scripted(run_id="20260101-100000-gt00", mode="ground-truth", candidates=["a-very-long-candidate-name-1",
                   "a-very-long-candidate-name-2"], scores={"a-very-long-candidate-name-1": 0.7,
                                                            "a-very-long-candidate-name-2": 0.6}).complete()
    new = scripted(run_id="20260102-120000-abcd").complete()
    out = damoc("runs", env={"COLUMNS": "80", "TERM": "xterm"})
    assert out.returncode == 0, out.stderr
    assert old.run_id in out.stdout and new.run_id in out.stdout, out.stdout
    assert "1m00s" in out.stdout                       # the run's RunDir.seconds(), written as the app writes it
    assert max(len(line) for line in out.stdout.splitlines()) <= 80

    latest = damoc("attach", "latest", "--json")
    assert latest.returncode == 0, latest.stderr
    assert json.loads(latest.stdout)["run_id"] == new.run_id
    prefix = damoc("attach", "20260101", "--json")
    assert prefix.returncode == 0, prefix.stderr
    assert json.loads(prefix.stdout)["run_id"] == old.run_id
    ambiguous = damoc("attach", "2026", "--json")
    assert ambiguous.returncode != 0 and "20260101-100000-gt00" in (ambiguous.stderr + ambiguous.stdout)
