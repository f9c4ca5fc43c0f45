"""AtS's Table 1 on the real fine-tuning curves: which predictor ranks 30 models by their full-data loss best?

    python bench/bench_extrapolate.py                          # FLAN and WMT19 from ../shared/data/finetune-curves
    python bench/bench_extrapolate.py path/to/gigaword.csv --json

For every table and every budget 1/8, 1/16, ..., 1/512 of the full size (1,638,400 examples in AtS's tables), each
predictor sees only the size columns up to the budget (the table is cut the way `damoc extrapolate --budget` cuts
it) and predicts every model's loss at the full size; the scores compare that with the table's full-size column:
PearCorr = 100 x Pearson(predicted, true), RelAcc = 100 x (worst - true loss of the predicted best) / (worst -
best), Kendall tau-b (Lin et al. 2024, arXiv 2402.02314, Table 1; their `src/draw.py`). Zero-shot does not depend
on the budget. The same settings are used for every budget and table: nothing is fitted to the full-size column.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TABLES = [REPO.parent / "shared" / "data" / "finetune-curves" / f for f in ("flan.csv", "wmt19.csv")]
PREDICTORS = ("final", "ats", "damoc", "zero-shot")
RATIOS = (8, 16, 32, 64, 128, 256, 512)


def evaluate(path: Path, predictors: tuple[str, ...] = PREDICTORS, ratios: tuple[int, ...] = RATIOS) -> dict[str, Any]:
    """{"table", "full", "rows": [{"ratio", "budget", "predictor", "pearcorr", "relacc", "kendall", "seconds"}]}."""
    from damoc.curves import predict
    from damoc.curves.stats import kendall, pearcorr, relacc
    from damoc.curves.table import read_table

    full_table = read_table(path)
    full = max(full_table.header_sizes)
    truth = {c.name: c.values[-1] for c in full_table.curves if c.sizes[-1] == full}
    names = sorted(truth)
    rows = []
    for ratio in ratios:
        budget = full // ratio
        curves = [c for c in read_table(path, budget).curves if c.name in truth]
        for name in predictors:
            t0 = time.perf_counter()
            ranking = {p.name: p.predicted for p in predict(curves, full, name)}
            pred, true = [ranking[n] for n in names], [truth[n] for n in names]
            rows.append({"ratio": ratio, "budget": budget, "predictor": name, "pearcorr": pearcorr(pred, true),
                         "relacc": relacc(pred, true), "kendall": kendall(pred, true),
                         "seconds": time.perf_counter() - t0})
    return {"table": str(path), "full": full, "models": len(names), "rows": rows}


def print_table(res: dict[str, Any]) -> None:
    preds = list(dict.fromkeys(r["predictor"] for r in res["rows"]))
    cell = {(r["ratio"], r["predictor"]): r for r in res["rows"]}
    ratios = sorted({r["ratio"] for r in res["rows"]})
    print(f"\n{Path(res['table']).stem}: {res['models']} models, true loss at {res['full']:,} examples")
    print(f"{'':18}" + "".join(f"{p:>11}" for p in preds))
    for metric, label in (("pearcorr", "PearCorr"), ("relacc", "RelAcc"), ("kendall", "Kendall")):
        for ratio in ratios:
            vals = [cell[(ratio, p)][metric] for p in preds]
            fmt = "{:>11.3f}" if metric == "kendall" else "{:>11.1f}"
            print(f"{label + '-1/' + str(ratio):18}" + "".join(fmt.format(v) for v in vals))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tables", nargs="*", type=Path, help="AtS-format CSVs (default: FLAN and WMT19 in ../shared)")
    ap.add_argument("--predictors", default=",".join(PREDICTORS), help="comma-separated (default: %(default)s)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)
    tables = args.tables or DEFAULT_TABLES
    missing = [str(t) for t in tables if not t.exists()]
    if missing:
        print(f"no such table: {', '.join(missing)}", file=sys.stderr)
        return 2
    results = [evaluate(t, tuple(args.predictors.split(","))) for t in tables]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for res in results:
            print_table(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
