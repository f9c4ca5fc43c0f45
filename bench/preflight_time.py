"""The pre-flight's wall-time estimate against measured runs: for each finished DaMoC run with a finished
ground-truth run of the same label (the demo's and bench_selection.py's runs in the data dir), the estimate
`damoc.pipeline.work.training_work` makes from the run's own config (this machine's cached throughput probe, the
registry's sizes) next to what the run directories measured: proxy training, full training, evaluation, end to end.

    nice -n 5 .venv/bin/python bench/preflight_time.py [--json] [--runs DIR] [--limit 30]

Training seconds are the cells' own `train_seconds` (the plain proxy cell of each candidate, `finetune-<m>-s<seed>`,
for the DaMoC arm; a run with learning-curve subsets has more cells, which the estimate does not count). Target:
estimate / measured within 0.7-1.3 (issue 17 item 9). The measured runs ran under whatever load the machine had
then; the probe measures it now (both `uptime` loads are printed).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _cells(run: Path) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for done in sorted(run.glob("cells/*/*/done.json")):
        cand, stage = done.parent.parent.name, done.parent.name
        try:
            out.append((cand, stage, json.loads(done.read_text())))
        except (OSError, ValueError):
            continue
    return out


def measured(run: Path, mode: str) -> dict[str, float]:
    train = evals = 0.0
    for cand, stage, d in _cells(run):
        if cand.startswith("_") or not stage.startswith("finetune-"):
            continue
        if mode == "damoc" and d.get("subset") not in (None, 1.0):
            continue
        train += float(d.get("train_seconds") or 0.0)
        evals += float(d.get("eval_seconds") or 0.0)
    info = json.loads((run / "run.json").read_text())
    return {"train": train, "eval": evals, "end_to_end": float(info.get("seconds") or 0.0)}


def pairs(runs: Path) -> list[tuple[Path, Path]]:
    by_label: dict[str, dict[str, Path]] = {}
    for r in sorted(runs.iterdir()):
        try:
            info = json.loads((r / "run.json").read_text())
        except (OSError, ValueError):
            continue
        if info.get("status") != "finished" or info.get("mode") not in ("damoc", "ground-truth"):
            continue
        cfg = json.loads((r / "config.json").read_text())
        sel = cfg.get("select") or {}
        if info["mode"] == "damoc" and (sel.get("adaptive") or list(sel.get("sizes") or [1.0]) != [1.0]):
            continue                                      # learning-curve arms: more cells than the recipe
        by_label.setdefault(info.get("label") or "", {})[info["mode"]] = r    # the latest of each mode
    return [(d["damoc"], d["ground-truth"]) for d in by_label.values() if "damoc" in d and "ground-truth" in d]


def main() -> None:
    from damoc.data.io import load_samples
    from damoc.pipeline.config import RunConfig
    from damoc.pipeline.work import training_work
    from damoc.settings import Settings

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--runs", type=Path)
    o = ap.parse_args()
    s = Settings.load()
    rows = []
    for dm, gt in pairs(o.runs or s.runs_dir):
        cfg = RunConfig.model_validate(json.loads((dm / "config.json").read_text()))
        n = len(load_samples(cfg.dataset.train, skip_bad=True).samples)
        work = training_work(cfg, n, settings=s, probe=True)
        if work is None or work.time is None:
            print(f"{dm.name}: no estimate ({work.time_note if work else 'not a DaMoC run'})", file=sys.stderr)
            continue
        t = work.time
        m_dm, m_gt = measured(dm, "damoc"), measured(gt, "ground-truth")
        row = {"label": json.loads((dm / "run.json").read_text()).get("label"), "damoc_run": dm.name,
               "ground_truth_run": gt.name, "samples": n, "tokens_per_sample": round(t.tokens_per_sample, 1),
               "proxy_train": [t.proxy_train_seconds, m_dm["train"]],
               "full_train": [t.full_train_seconds, m_gt["train"]],
               "eval": [t.eval_seconds, m_gt["eval"]],
               "full_end_to_end": [t.full_seconds, m_gt["end_to_end"]],
               "damoc_end_to_end": [t.damoc_seconds, m_dm["end_to_end"]],
               "ratio_estimated": t.ratio, "ratio_measured": m_dm["end_to_end"] / max(m_gt["end_to_end"], 1e-9)}
        rows.append(row)
    out = {"rows": rows, "load": os.getloadavg()}
    if o.json:
        print(json.dumps(out))
        return
    print(f"{'label':18s} {'what':16s} {'estimate':>9s} {'measured':>9s} {'est/meas':>8s}")
    for r in rows:
        for k in ("proxy_train", "full_train", "eval", "damoc_end_to_end", "full_end_to_end"):
            e, m = r[k]
            print(f"{r['label']:18s} {k:16s} {e:9.1f} {m:9.1f} {e / m if m else float('nan'):8.2f}")
        print(f"{r['label']:18s} {'DaMoC / full':16s} {r['ratio_estimated']:9.3f} {r['ratio_measured']:9.3f}")
    print(f"load now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
