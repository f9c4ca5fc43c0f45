"""`damoc tui`: open the terminal app."""
from __future__ import annotations

import click

from damoc.cli.common import settings


@click.command()
@click.option("--theme", default=None, help="Theme name (damoc-dark, damoc-light, damoc-ansi).")
@click.option("--no-mouse", is_flag=True, help="Disable mouse support.")
def tui(theme: str | None, no_mouse: bool) -> None:
    """Open the terminal app (registry, run wizard, live leaderboard, history)."""
    from damoc_tui.app import run_app

    run_app(settings(), theme=theme, mouse=not no_mouse)
