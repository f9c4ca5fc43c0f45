"""The `damoc` command. Subcommands live in their own modules and are imported only when invoked, so
`damoc --help` stays fast and never imports torch. `damoc` with no arguments opens the terminal app."""
from __future__ import annotations

import importlib
import sys

import click

from damoc import __version__

# command name -> "module:attribute"; each module owns its command(s)
COMMANDS: dict[str, tuple[str, str]] = {
    "locate": ("damoc.cli.core:locate", "Print where damoc keeps its settings, registry, caches and runs."),
    "data": ("damoc.cli.core:data", "Inspect datasets."),
    "zoo": ("damoc.cli.zoo:zoo", "Build the offline demo zoo and list its tasks."),
    "registry": ("damoc.cli.registry:registry", "Manage candidate Chat/Base pairs."),
    "filter": ("damoc.cli.filter:filter_cmd", "Select a subset of a training set (12 methods)."),
    "compress": ("damoc.cli.compress:compress", "Compress the tokens of training samples."),
    "prune": ("damoc.cli.prune:prune", "Layer importance, pruning and sparse merging of one candidate."),
    "run": ("damoc.cli.run:run", "Run a selection (DaMoC, ground truth or a baseline)."),
    "attach": ("damoc.cli.run:attach", "Follow a running (or finished) run."),
    "runs": ("damoc.cli.run:runs", "List runs."),
    "compare": ("damoc.cli.run:compare", "Compare the rankings of two runs."),
    "extrapolate": ("damoc.cli.extrapolate:extrapolate", "Rank models by their extrapolated fine-tuning curves."),
    "demo": ("damoc.cli.run:demo", "Run DaMoC on the offline demo zoo (the main job)."),
    "tui": ("damoc.cli.tui:tui", "Open the terminal app."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, _, attr = COMMANDS[name][0].partition(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(n, h) for n, (_, h) in COMMANDS.items()])


@click.group(cls=LazyGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="damoc")
@click.option("--home", type=click.Path(file_okay=False), envvar="DAMOC_HOME",
              help="Data directory (default: the user data dir; env DAMOC_HOME).")
@click.pass_context
def cli(ctx: click.Context, home: str | None) -> None:
    """damoc: choose the open LLM to fine-tune by fine-tuning cheap proxies (DaMoC).

    Run `damoc demo` for the offline demo, `damoc tui` (or plain `damoc`) for the terminal app.
    """
    from damoc.settings import Settings

    ctx.ensure_object(dict)
    ctx.obj["home"] = home
    Settings.load(home=home)   # a bad DAMOC_* value or settings.toml key stops every command, named (ConfigError)
    if ctx.invoked_subcommand is None:
        ctx.invoke(cli.get_command(ctx, "tui"))  # type: ignore[union-attr]


def main(argv: list[str] | None = None) -> None:
    from damoc.cli.common import run_cli

    sys.exit(run_cli(cli, argv))
