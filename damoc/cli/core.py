"""`damoc locate` and `damoc data ...`."""
from __future__ import annotations

from typing import Any

import click
from rich.markup import escape

from damoc.cli.common import echo_json, out_console, settings


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.argument("what", required=False)
def locate(what: str | None, as_json: bool) -> None:
    """Print where damoc keeps things (WHAT: home, settings, registry, runs, cache, zoo, themes)."""
    locs = settings().locations()
    if what:
        if what not in locs:
            raise click.BadParameter(f"unknown location {what!r}; one of {', '.join(locs)}")
        click.echo(str(locs[what]))
        return
    if as_json:
        echo_json({k: str(v) for k, v in locs.items()})
        return
    for k, v in locs.items():
        click.echo(f"{k:<9} {v}{'' if v.exists() else '  (not created yet)'}")


@click.group()
def data() -> None:
    """Inspect datasets."""


@data.command("inspect")
@click.argument("path")           # a file, a save_to_disk folder or dataset_info.json:NAME; the loader checks it
@click.option("--format", "fmt", default="auto", show_default=True,
              help="Record shape: auto, alpaca, qa, mc, sharegpt, messages, preference, kto.")
@click.option("--tokenizer", default=None, help="Count tokens with this HF tokenizer (id or folder).")
@click.option("--split", default="train", show_default=True, help="Split of a save_to_disk DatasetDict.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def inspect_cmd(path: str, fmt: str, tokenizer: str | None, split: str, as_json: bool) -> None:
    """Detected format, counts, token lengths and every problem found in PATH. Exit 1 when a record is bad."""
    from damoc.data.inspect import inspect_dataset
    from damoc.errors import DataError

    try:
        rep = inspect_dataset(path, format=fmt, tokenizer=tokenizer, split=split)
    except DataError as e:
        if not as_json:
            raise
        # the whole file is unreadable: still one JSON object on stdout, shaped like a report
        err = {"message": e.message, "hint": e.hint, "path": e.path, "line": e.line, "field": e.field}
        echo_json({"path": path, "ok": False, "error": err, "problems": [
            {"line": e.line, "field": e.field, "message": e.message, "severity": "error", "hint": e.hint}]})
        raise click.exceptions.Exit(2) from None
    if as_json:
        echo_json(rep)
    else:
        _print_report(rep)
    if not rep["ok"]:
        raise click.exceptions.Exit(1)


def _print_report(rep: dict[str, Any]) -> None:
    from rich.table import Table

    from damoc.facade import dataset_lines

    con = out_console()
    con.print(f"[bold]{escape(rep['path'])}[/]  file type {rep['file_type']}, format [bold]{rep['format']}[/]")
    t = Table(title=f"length in tokens ({rep['tokenizer']})")
    for col in ("field", "min", "mean", "median", "p95", "max"):
        t.add_column(col, justify="right" if col != "field" else "left")
    for f, st in rep["token_lengths"].items():
        t.add_row(f, *(str(st[k]) for k in ("min", "mean", "median", "p95", "max")))
    counts, *problems = dataset_lines(rep, max_problems=50, hints=True, lengths=False)
    con.print(counts, highlight=False)
    con.print(t)                                   # the lengths field by field
    for line in problems:
        con.print(line, highlight=False)
