"""`damoc filter`: select a subset of a training set with one of the 12 methods, or list them."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from damoc.cli.common import echo_json, err_console, out_console, settings


def _params(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{p!r}: expected KEY=VALUE", param_hint="--param")
        out[key.strip()] = value.strip()
    return out


@click.command("filter")
@click.argument("data", required=False, type=click.Path(dir_okay=True))
@click.option("--method", "-m", default="graphcut", show_default=True, help="Filter method (see --list).")
@click.option("--ratio", type=float, default=None, help="Fraction of samples to keep, in (0, 1]. [default: 0.1]")
@click.option("--count", type=int, default=None, help="Number of samples to keep (overrides --ratio).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random choice.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the kept records here (JSONL, original fields).")
@click.option("--scores", "scores_path", type=click.Path(dir_okay=False),
              help="Write one JSON line per sample: id, score, kept, rank, reason.")
@click.option("--embeddings", type=click.Path(exists=True, dir_okay=False),
              help="Precomputed embeddings (.npy, one row per sample in file order) instead of encoding.")
@click.option("--scorer", help="Scorer/judge LM for alpagasus, superfiltering, less, mods, cherry, deita, car: "
                               "a model folder or a registry name.")
@click.option("--target", type=click.Path(exists=True), help="Target samples for LESS (the task's validation split).")
@click.option("--param", "-p", "param_pairs", multiple=True, metavar="KEY=VALUE",
              help="Method parameter (repeatable); see --show-params.")
@click.option("--format", "fmt", default="auto", show_default=True, help="Record shape of DATA.")
@click.option("--encoder", help="Sentence encoder (HF id or folder) instead of the settings' / offline MiniLM.")
@click.option("--skip-bad", is_flag=True, help="Skip bad records (and samples without answers) instead of failing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (stdout only).")
@click.option("--list", "list_methods", is_flag=True, help="List the methods by family and exit.")
@click.option("--show-params", is_flag=True, help="Show the parameters of --method and exit.")
def filter_cmd(data: str | None, method: str, ratio: float | None, count: int | None, seed: int, out: str | None,
               scores_path: str | None, embeddings: str | None, scorer: str | None, target: str | None,
               param_pairs: tuple[str, ...], fmt: str, encoder: str | None, skip_bad: bool, as_json: bool,
               list_methods: bool, show_params: bool) -> None:
    """Select a subset of the training set DATA (12 methods in three families; GraphCut is the paper's pick).

    \b
    damoc filter train.jsonl --method graphcut --ratio 0.1 --out subset.jsonl
    damoc filter train.jsonl -m superfiltering --scorer tiny-llama --count 200 --scores scores.jsonl
    damoc filter --list
    """
    from damoc.filters import FILTERS, list_methods as _list

    if list_methods:
        _print_list(_list(), as_json)
        return
    if show_params:
        from damoc.filters import method_info
        info = method_info(method)
        if as_json:
            echo_json(info)
        else:
            _print_params(info)
        return
    if not data:
        raise click.UsageError("missing DATA (a dataset file or folder), or pass --list")
    FILTERS.entry(method)                          # unknown method: did-you-mean before loading anything
    import os
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")       # transformers' per-load weight bars
    params = _params(param_pairs)
    if ratio is None and count is None:
        ratio = 0.1
    s = settings()

    from damoc.console import ConsoleReporter
    from damoc.data import load_samples, write_samples
    from damoc.filters import select

    loaded = load_samples(data, format=fmt, skip_bad=skip_bad)
    samples = loaded.samples
    tgt = load_samples(target, skip_bad=skip_bad).samples if target else None
    with ConsoleReporter(err_console(), transient=as_json) as rep:
        sel = select(samples, method, ratio=ratio if count is None else None, count=count, seed=seed,
                     params=params, embeddings=embeddings, reporter=rep, settings=s, scorer=scorer, target=tgt,
                     skip_bad=skip_bad, encoder=encoder)
    written = None
    if out:
        written = write_samples(sel.subset(samples), out, original=True)
    if scores_path:
        from damoc.fsutil import atomic_write_text
        rows = sel.score_rows()
        atomic_write_text(Path(scores_path), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    summary: dict[str, Any] = {"data": str(data), **sel.summary(), "out": out, "written": written,
                               "scores_file": scores_path, "skipped_records": loaded.skipped,
                               "ratio": ratio if count is None else None, "count": count, "seed": seed}
    if as_json:
        echo_json(summary)
        return
    con = out_console()
    con.print(f"[bold]{sel.method}[/]: kept [bold green]{sel.kept}[/] of {sel.n} samples, dropped {sel.dropped} "
              f"in {sel.seconds:.1f}s" + (f" -> {out}" if out else ""))
    if loaded.skipped:
        con.print(f"[yellow]{loaded.skipped} bad record(s) skipped while loading[/]")
    if not out and not scores_path:
        shown = ", ".join(sel.ids[:5]) + (" ..." if len(sel.ids) > 5 else "")
        con.print(f"kept ids: {shown}  (use --out to write them, --scores for every score and reason)")


def _print_list(methods: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        echo_json(methods)
        return
    from rich.table import Table

    t = Table(title="damoc filter methods", show_lines=False)
    t.add_column("family")
    t.add_column("method", style="bold")
    t.add_column("description")
    last = None
    for m in methods:
        t.add_row(m["family"] if m["family"] != last else "", m["name"], m["description"])
        last = m["family"]
    out_console().print(t)


def _print_params(info: dict[str, Any]) -> None:
    con = out_console()
    con.print(f"[bold]{info['name']}[/] ({info['family']}): {info['description']}")
    if info.get("reference"):
        con.print(f"[dim]follows: {info['reference']}[/]")
    needs = [w for w, k in (("a scorer LM (--scorer)", "needs_scorer"), ("answers", "needs_answers"),
                            ("embeddings", "uses_embeddings")) if info.get(k)]
    if needs:
        con.print("needs: " + ", ".join(needs))
    if not info["params"]:
        con.print("no parameters")
    for p in info["params"]:
        con.print(f"  [bold]{p['name']}[/] ({p['type']}, default {p['default']!r}): {p['help']}", highlight=False)
