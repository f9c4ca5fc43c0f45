"""`damoc zoo build` and `damoc zoo tasks`: the offline demo zoo and its tasks."""
from __future__ import annotations

import click

from damoc.cli.common import echo_json, err_console, out_console, settings

SIZE = click.Choice(["test", "demo"])


@click.group()
def zoo() -> None:
    """Build the offline demo zoo (tiny Chat/Base pairs trained from scratch) and list its demo tasks."""


@zoo.command("build")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for the pool (default: the zoo folder of the data dir, see `damoc locate zoo`).")
@click.option("--size", type=SIZE, default=None,
              help="test: seconds, for the test suite; demo: minutes, models good enough to fine-tune "
                   "[default: the zoo_size setting, demo].")
@click.option("--json", "as_json", is_flag=True, help="Print the pool as one JSON list on stdout.")
def build(out: str | None, size: str | None, as_json: bool) -> None:
    """Build the pool (cached: a second call returns at once) and register it in the model registry."""
    from damoc.console import ConsoleReporter
    from damoc.zoo import build_zoo

    s = settings()
    size = size or s.zoo_size
    with ConsoleReporter(err_console(), transient=as_json) as rep:
        cands = build_zoo(size=size, out=out, settings=s, reporter=rep, register=True)
    if as_json:
        echo_json([c.to_dict() for c in cands])
        return
    from rich.table import Table

    t = Table(title=f"damoc zoo ({size})")
    for col in ("name", "architecture", "parameters", "layers", "hidden", "Base"):
        t.add_column(col, justify="right" if col in ("parameters", "layers", "hidden") else "left")
    for c in cands:
        t.add_row(c.name, c.architecture, f"{c.parameters / 1e6:.2f}M", str(c.layers), str(c.hidden_size),
                  "yes" if c.base_path else "no (Chat only)")
    con = out_console()
    con.print(t)
    con.print(f"pool folder: {cands[0].chat_path.rsplit('/', 3)[0] if cands else '-'}")


@zoo.command("tasks")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Folder for the task files.")
@click.option("--size", type=SIZE, default="demo", show_default=True, help="Task size (test: a few hundred rows).")
@click.option("--json", "as_json", is_flag=True, help="Print the tasks as one JSON list on stdout.")
def tasks(out: str | None, size: str, as_json: bool) -> None:
    """List the demo tasks (generating their JSONL files on first use)."""
    from damoc.zoo import demo_tasks

    ts = demo_tasks(size=size, out=out, settings=settings())
    if as_json:
        echo_json([t.to_dict() for t in ts])
        return
    con = out_console()
    for t in ts:
        con.print(f"[bold]{t.name}[/]  metric {t.metric}  train {t.train_size}  test {t.test_size}")
        con.print(f"  {t.description}")
        con.print(f"  train: {t.train_path}\n  test:  {t.test_path}")
