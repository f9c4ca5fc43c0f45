"""`damoc run`, `damoc attach`, `damoc runs`, `damoc compare`, `damoc demo`.

The CLI never holds a model: it plans, starts the run's driver process and follows the run's event log
(progress on stderr through `ConsoleReporter`; `--json` output alone on stdout).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from damoc.cli.common import echo_json, err_console, out_console, settings
from damoc.settings import Settings

if TYPE_CHECKING:
    from damoc.pipeline.config import RunConfig
    from damoc.pipeline.leaderboard import Leaderboard
    from damoc.pipeline.plan import Plan


# -- shared helpers ------------------------------------------------------------------------------------

def _follow(s: Settings, run_id: str, *, quiet: bool = False) -> str:
    """Show a run's events live until it ends; Ctrl-C cancels the run (it can be resumed). Returns its status."""
    from damoc.console import ConsoleReporter
    from damoc.events import CandidateScored
    from damoc.pipeline import api

    rd = api.open_run(s, run_id)
    if rd.problem:
        from damoc.errors import DamocError

        raise DamocError(f"run {rd.run_id} cannot be read: {rd.problem}", f"fix or remove {rd.path}")
    for key, why in rd.unusable_markers():
        click.echo(f"warning: {key}: {why}; the cell counts as not done (resume redoes it)", err=True)
    cancelling = False
    rep = ConsoleReporter(err_console()) if not quiet else None
    try:
        if rep is not None:
            rep.__enter__()
        while True:
            try:
                for ev in rd.follow():
                    if rep is not None:
                        rep.emit(ev)
                        if isinstance(ev, CandidateScored):   # the live leaderboard, one line per new score
                            rep.progress.console.print(_standings(api.leaderboard(rd)), highlight=False)
                break
            except KeyboardInterrupt:
                if cancelling:         # a second Ctrl-C: stop following, the run finishes cancelling on its own
                    break
                cancelling = True
                click.echo(f"cancelling run {rd.run_id} (resume later with: damoc run --resume {rd.run_id}) ...",
                           err=True)
                try:
                    api.cancel_run(s, rd.run_id)
                except Exception as e:  # already finished between the two checks
                    click.echo(f"  {e}", err=True)
    finally:
        if rep is not None:
            rep.close()
    while rd.is_alive():             # the driver writes its last files after run_finished
        time.sleep(0.1)
    return rd.status()


def _standings(lb: Leaderboard) -> str:
    parts = [f"{r.rank}. {r.candidate} {r.score:.2f}{' ≈' if r.too_close else ''}" for r in lb.rows
             if r.score is not None]
    waiting = sum(1 for r in lb.rows if r.score is None and r.status in ("pending", "running"))
    return "   standings: " + "  ".join(parts) + (f"  (+{waiting} to go)" if waiting else "")


def _percent(p: float) -> str:
    """A probability as a whole percent (the app writes it the same way: facade.fmt_percent)."""
    from damoc.facade import fmt_percent

    return fmt_percent(p)


def _print_leaderboard(lb: Leaderboard) -> None:
    """A compact table (fits 80 columns); long reasons become numbered notes under it."""
    from rich.table import Table

    con = out_console()
    notes: list[str] = []

    def note(text: str) -> str:
        if text not in notes:
            notes.append(text)
        return f"[{notes.index(text) + 1}]"

    from rich import box

    both = len(lb.methods) > 1
    pruning = lb.mode == "damoc"
    t = Table(title=f"run {lb.run_id} ({lb.mode}) - {lb.metric or 'score'}", title_justify="left",
              box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True, padding=(0, 1))
    p_best = any(r.p_best is not None for r in lb.rows)
    cols = [("#", "right"), ("candidate", "left"), ("score", "right"), ("±", "right"), ("gap", "right")]
    cols += [("win%", "right")] if p_best else []      # P(best) in percent: fits 80 columns
    cols += [("method", "left")] if both else []
    cols += [("pruned", "right"), ("merge", "left")] if pruning else []
    cols += [("train/eval s", "right"), ("status", "left")]
    for col, just in cols:
        t.add_column(col, justify=just, no_wrap=col != "status")  # type: ignore[arg-type]
    for r in lb.rows:
        score = "" if r.score is None else f"{r.score:.2f}" + (" ≈" if r.too_close else "")
        cells = [str(r.rank or ""), r.candidate, score, "" if r.stderr is None else f"{r.stderr:.2f}",
                 "" if r.gap is None else f"{r.gap:.2f}"]
        if p_best:
            cells.append("" if r.p_best is None else _percent(r.p_best))
        if both:
            cells.append(r.method or "")
        if pruning:
            merge = r.merge
            if merge.startswith("skipped:"):
                merge = "no " + note(merge.removeprefix("skipped:").strip())
            elif merge.startswith("applied ("):
                merge = merge.removeprefix("applied (").rstrip(")")
            cells += [r.layers, merge]
        status = r.status + (" " + note(f"{r.candidate}: {r.reason}") if r.reason else "")
        te = [_s(r.times.get("finetune")), _s(r.times.get("evaluate"))]
        cells += ["/".join(te) if any(te) else "", status]
        t.add_row(*cells)
    con.print(t)
    for i, n in enumerate(notes, 1):
        con.print(f"[dim][{i}][/] {n}", highlight=False)
    times = {**lb.shared_times}
    prune = sum(r.times.get("prune", 0.0) for r in lb.rows)
    if prune:
        times["prune (all)"] = prune
    if times:
        con.print("stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
    if lb.too_close_to_call:
        con.print(f"[yellow]≈ too close to call[/]: {lb.note}")
    mw = lb.method_winners()
    if mw:
        con.print("best fine-tuning method per model: " + ", ".join(f"{c}: {m}" for c, m in mw.items()))


def _s(v: float | None) -> str:
    return "" if v is None else f"{v:.1f}"


def _run_json(s: Settings, run_id: str, status: str) -> dict[str, Any]:
    from damoc.pipeline import api

    rd = api.open_run(s, run_id)
    lb = api.leaderboard(rd)
    return {"run_id": rd.run_id, "mode": lb.mode, "status": status, "metric": lb.metric, "winner": lb.winner,
            "ranking": lb.ranking, "seconds": api.run_seconds(rd), "train_seconds": lb.train_seconds(),
            "too_close_to_call": lb.too_close_to_call, "method_winners": lb.method_winners(),
            "leaderboard": lb.to_dict()["rows"], "path": str(rd.path),
            "handoff": str(rd.path / "handoff") if (rd.path / "handoff").is_dir() else None}


def _dry_run(s: Settings, cfg: RunConfig, as_json: bool) -> None:
    """The dataset checked as `damoc data inspect` checks it, the plan with the downloads it needs and the
    pre-flight, for candidates on this machine or still on the hub. Exit 1 when the dataset has an error."""
    from damoc.facade import dataset_lines, plan_lines
    from damoc.pipeline import api
    from damoc.pipeline.work import probe_wanted

    dry = api.dry_run(s, cfg)
    if as_json:
        echo_json(dry.to_dict())
    else:
        con = out_console()
        con.print(f"[b]dataset[/b] {escape(str(dry.plan.config['dataset']['train']))}", highlight=False)
        for line in dataset_lines(dry.dataset, max_problems=10, hints=True):
            con.print("  " + line, highlight=False)
        test = dry.dataset.get("test")
        if test:
            con.print(f"[b]test[/b] {escape(str(dry.plan.config['dataset']['test']))}", highlight=False)
            for line in dataset_lines(test, max_problems=10, hints=True):
                con.print("  " + line, highlight=False)
        # a dry run is how a user sizes a pick: measure this machine once (seconds, cached) to give wall times
        for line in plan_lines(dry.plan, cfg, samples=dry.samples, settings=s, probe=probe_wanted(True)):
            con.print(line, highlight=False)
    if not dry.ok:
        if not as_json:
            click.echo("error: the dataset has errors (above): the run would stop on them; fix the lines named "
                       "(damoc data inspect FILE lists every one)", err=True)
        raise click.exceptions.Exit(1)


# -- commands -------------------------------------------------------------------------------------------

@click.command()
@click.option("--dataset", type=click.Path(), help="Training data (JSONL/JSON/CSV/Parquet/save_to_disk folder).")
@click.option("--test", type=click.Path(), help="Test data (default: a held-out 10% of --dataset).")
@click.option("--candidates", help="Comma-separated registry names (or model folders).")
@click.option("--mode", type=click.Choice(["damoc", "ground-truth", "zero-shot", "few-shot"]), default=None,
              help="damoc (default), ground-truth (full fine-tune on all data), zero-shot or few-shot baselines.")
@click.option("--ft", type=click.Choice(["full", "lora", "both"]), default=None, help="Fine-tuning method(s).")
@click.option("--metric", type=click.Choice(["auto", "bertscore_rouge", "squad_f1", "mc_accuracy"]), default=None)
@click.option("--config", "config_path", type=click.Path(), help="Run config file (YAML, TOML or JSON).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config value, e.g. filter.ratio=0.2.")
@click.option("--recipe", default=None, help="Named recipe preset (paper, filter-only, filter+compress, ...).")
@click.option("--label", default=None, help="A label shown in `damoc runs`.")
@click.option("--resume", "resume_id", metavar="RUN_ID", help="Continue a stopped run (finished cells are kept).")
@click.option("--detach", is_flag=True, help="Start the run and return (follow it with `damoc attach`).")
@click.option("--dry-run", is_flag=True, help="Show the plan and the pre-flight estimate; run nothing.")
@click.option("--executor", default=None, metavar="local|ray",
              help="Where the workers run: local (this machine, default) or ray (pip install 'damoc[cluster]').")
@click.option("--ray-address", default=None, metavar="ADDR",
              help="With --executor ray: empty = a local Ray instance, auto = this machine's cluster, ray://host:port.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def run(dataset: str | None, test: str | None, candidates: str | None, mode: str | None, ft: str | None,
        metric: str | None, config_path: str | None, sets: tuple[str, ...], recipe: str | None, label: str | None,
        resume_id: str | None, detach: bool, dry_run: bool, executor: str | None, ray_address: str | None,
        as_json: bool) -> None:
    """Run a selection: DaMoC proxies (default), the ground truth, or a zero-/few-shot baseline."""
    from damoc.pipeline import api

    s = settings()
    if resume_id:
        h = api.resume_run(s, resume_id, detach=detach)
        _after_start(s, h.run_id, detach, as_json)
        return
    base: dict[str, Any] = {}
    for key, val in (("dataset.train", dataset), ("dataset.test", test), ("candidates", candidates),
                     ("mode", mode), ("ft", ft), ("evaluate.metric", metric), ("label", label),
                     ("executor.kind", executor or ("ray" if ray_address is not None else None)),
                     ("executor.address", ray_address)):
        if val is not None:
            base[key] = val
    overrides = list(sets)
    if recipe:
        from damoc.pipeline.recipes import recipe_overrides
        overrides = recipe_overrides(recipe) + overrides
    cfg = api.load_config(config_path, overrides, base)
    if dry_run:
        _dry_run(s, cfg, as_json)
        return
    plan = api.plan_run(s, cfg)
    for w in plan.warnings:
        click.echo(f"note: {w}", err=True)
    h = api.start_run(s, cfg, detach=True, plan=plan)
    _after_start(s, h.run_id, detach, as_json)


def _after_start(s: Settings, run_id: str, detach: bool, as_json: bool) -> None:
    if detach:
        if as_json:
            echo_json({"run_id": run_id, "status": "running"})
        else:
            click.echo(f"run {run_id} started; follow it with: damoc attach {run_id}")
        return
    status = _follow(s, run_id)
    _report(s, run_id, status, as_json)


def _report(s: Settings, run_id: str, status: str, as_json: bool) -> None:
    from damoc.pipeline import api

    if as_json:
        echo_json(_run_json(s, run_id, status))
    else:
        rd = api.open_run(s, run_id)
        _print_leaderboard(api.leaderboard(rd))
        if (rd.path / "handoff").is_dir():
            click.echo(f"hand-off for the winner (LLaMA-Factory, ms-swift): {rd.path / 'handoff'}")
        if status in ("cancelled", "interrupted"):
            click.echo(f"run {run_id} {status}; continue it with: damoc run --resume {run_id}", err=True)
    if status == "cancelled":
        raise click.exceptions.Exit(130)
    if status == "failed":
        raise click.exceptions.Exit(1)


@click.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the final result as JSON on stdout.")
def attach(run_id: str, as_json: bool) -> None:
    """Follow a running (or finished) run: its events so far, then live progress, then the leaderboard. RUN_ID
    may be a unique prefix of a run id, or `latest` (the newest run)."""
    s = settings()
    status = _follow(s, run_id)
    from damoc.pipeline import api
    _report(s, api.open_run(s, run_id).run_id, status, as_json)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def runs(as_json: bool) -> None:
    """List runs, newest last."""
    from damoc.pipeline import api

    rows = api.list_runs(settings())
    if as_json:
        echo_json([r.to_dict() for r in rows])
        return
    if not rows:
        click.echo("no runs yet: start one with `damoc demo` or `damoc run`")
        return
    from rich.markup import escape
    from rich.table import Table

    from damoc.facade import fmt_duration

    t = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold underline")
    cols = ("run", "mode", "status", "created", "n", "winner", "time", "label")
    plain = [[r.run_id, r.mode, "unreadable" if r.problem else r.status,
              time.strftime("%m-%d %H:%M", time.localtime(r.created)) if r.created else "?", str(len(r.candidates)),
              r.winner or "", "" if r.seconds is None else fmt_duration(r.seconds), r.label] for r in rows]
    for i, col in enumerate(cols):
        # the run id is what `attach` / `--resume` take, and the facts beside it: never cut or wrapped (winner
        # and label give way, abbreviated with …)
        fixed = col not in ("winner", "label")
        t.add_column(col, no_wrap=True, overflow="ellipsis",
                     min_width=max([len(col)] + [len(p[i]) for p in plain]) if fixed else None,
                     justify="right" if col in ("n", "time") else "left")
    for r, p in zip(rows, plain):
        t.add_row(*[escape(v) for v in p[:2]],
                  f"[red]unreadable[/]: {escape(r.problem)}" if r.problem else p[2], *[escape(v) for v in p[3:]])
    out_console().print(t)


@click.command()
@click.argument("run_a")
@click.argument("run_b")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def compare(run_a: str, run_b: str, as_json: bool) -> None:
    """Compare the rankings of two runs (e.g. DaMoC vs ground truth): top-1 agreement, Kendall tau, Spearman rho,
    and the wall-time ratio (RUN_B's time / RUN_A's)."""
    from damoc.pipeline import api

    c = api.compare_runs(settings(), run_a, run_b)
    if as_json:
        echo_json(c.to_dict())
        return
    con = out_console()
    f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    con.print(f"A {c.run_a}: {' > '.join(c.ranking_a)}")
    con.print(f"B {c.run_b}: {' > '.join(c.ranking_b)}")
    con.print(f"top-1 agreement: {'yes' if c.top1_agree else 'no'} ({c.top1_a} vs {c.top1_b}); "
              f"Kendall tau {f(c.kendall_tau)}; Spearman rho {f(c.spearman_rho)} over {len(c.common)} candidates")
    con.print(f"wall time: A {c.seconds_a:.1f}s, B {c.seconds_b:.1f}s, B/A = {f(c.time_ratio)}; "
              f"training: A {c.train_seconds_a:.1f}s, B {c.train_seconds_b:.1f}s, B/A = {f(c.train_time_ratio)}")
    if c.only_a or c.only_b:
        con.print(f"[yellow]not scored in both[/]: {', '.join(c.only_a + c.only_b)}")


@click.command()
@click.option("--verify", is_flag=True, help="Also run the ground truth (grid search) and report agreement and "
                                             "speed-ups.")
@click.option("--task", default=None, help="Demo task (default: the first, notes-qa; see: damoc zoo tasks).")
@click.option("--size", type=click.Choice(["demo", "test"]), default=None, help="Zoo size (default: settings).")
@click.option("--candidates", default=None, help="A subset of the zoo (comma-separated; default: all).")
@click.option("--no-diagnose", is_flag=True, help="With --verify: skip the ablation runs that explain a miss.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a demo config value.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def demo(verify: bool, task: str | None, size: str | None, candidates: str | None, no_diagnose: bool,
         sets: tuple[str, ...], as_json: bool) -> None:
    """The main job: build (or reuse) the offline demo zoo and run DaMoC on a demo task, live."""
    from damoc.pipeline import demo as D

    s = settings()
    names = [n for n in (candidates or "").split(",") if n] or None
    res = D.run_demo(s, size=size or s.zoo_size, task=task, overrides=list(sets), verify=verify,
                     follow=lambda run_id: _follow(s, run_id), console=err_console(), candidates=names,
                     diagnose=not no_diagnose)
    if as_json:
        echo_json(res)
        return
    from damoc.pipeline import api
    _print_leaderboard(api.leaderboard(api.open_run(s, res["runs"]["damoc"])))
    D.print_summary(res, out_console())
