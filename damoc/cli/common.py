"""Helpers shared by the CLI modules: settings from the context, error display, JSON output."""
from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from damoc.errors import DamocError
from damoc.settings import Settings


def settings(ctx: click.Context | None = None) -> Settings:
    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    home = (root.obj or {}).get("home") if root.obj else None
    return Settings.load(home=home)


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def err_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, no_color=bool(os.environ.get("NO_COLOR")) or None)


def out_console() -> Any:
    from rich.console import Console

    return Console(no_color=bool(os.environ.get("NO_COLOR")) or None)


def _show(e: DamocError) -> int:
    click.echo(f"error: {e.message}", err=True)
    if e.hint:
        click.echo(f"  hint: {e.hint}", err=True)
    return 2


def error_json(e: DamocError) -> dict[str, Any]:
    """The JSON error object a command prints on stdout in its --json mode."""
    from damoc.errors import DataError

    out: dict[str, Any] = {"error": e.message, "hint": e.hint, "kind": type(e).__name__}
    if isinstance(e, DataError):
        out |= {"path": e.path, "line": e.line, "field": e.field}
    return out


def run_cli(group: click.Group, argv: list[str] | None) -> int:
    """Run the click group; show `DamocError`s as one line + hint (exit 2), Ctrl-C as exit 130."""
    try:
        rv = group.main(args=argv, prog_name="damoc", standalone_mode=False)
        return rv if isinstance(rv, int) else 0      # click returns Exit codes instead of raising here
    except DamocError as e:
        return _show(e)
    except OSError as e:
        # a full disk, a read-only folder, a directory where a file should be: the user's to fix, so one line
        # with the path (and the free space), never a traceback. Anything else is a bug and keeps its traceback.
        from damoc.registry.storage import is_storage_error, storage_error

        if not is_storage_error(e):
            raise
        return _show(storage_error(e))
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except BrokenPipeError:
        sys.stderr.close()
        return 0
