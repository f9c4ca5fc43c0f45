"""`damoc extrapolate TABLE.csv --budget N`: rank models by their fine-tuning curves extrapolated to --target."""
from __future__ import annotations

import click

from damoc.cli.common import echo_json, out_console


@click.command()
@click.argument("table", type=click.Path(dir_okay=False), required=False)
@click.option("--budget", type=click.IntRange(min=1), default=None,
              help="Use only the size columns up to N examples (what the proxies cost).")
@click.option("--target", type=click.IntRange(min=1), default=None,
              help="Rank by the predicted loss at M examples (default: the largest size in the header).")
@click.option("--predictor", default="damoc", show_default=True, help="Curve predictor (see --list).")
@click.option("--list", "list_predictors", is_flag=True, help="List the curve predictors and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the ranking as one JSON object on stdout.")
def extrapolate(table: str | None, budget: int | None, target: int | None, predictor: str, list_predictors: bool,
                as_json: bool) -> None:
    """Rank the models of TABLE (AtS's format: model column, one column per training-set size with the loss
    there, 0 = zero-shot, optional size and family) by their loss predicted at --target from the columns up to
    --budget. Best (lowest predicted loss) first, with a 90% interval and the probability of being the best."""
    from damoc.curves import PREDICTORS, get_predictor, predict
    from damoc.curves.table import read_table

    if list_predictors:
        rows = [{"name": e.name, "family": e.family, "description": e.description} for e in PREDICTORS]
        if as_json:
            echo_json(rows)
        else:
            for r in rows:
                click.echo(f"{r['name']:<11}{r['description']}")
        return
    if not table:
        raise click.UsageError("missing TABLE (a CSV of loss per training-set size, AtS's format)")
    if budget is None:
        raise click.UsageError("missing --budget N (the largest training-set size the predictor may see)")
    pred = get_predictor(predictor)                 # an unknown name fails here, before the table is read
    name = PREDICTORS.normalise(predictor)
    tab = read_table(table, budget, min_points=max(pred.min_points, 1))
    goal = target if target is not None else max(tab.header_sizes)
    ranking = predict(tab.curves, goal, pred)
    if as_json:
        echo_json({"predictor": name, "budget": budget, "target": goal,
                   "ranking": [r.as_dict() for r in ranking]})
        return
    from rich.table import Table

    last = {c.name: c.last for c in tab.curves}
    t = Table(title=f"{name}: loss at {goal:,} examples, from the columns up to {budget:,}", show_edge=False)
    t.add_column("#", justify="right", no_wrap=True)
    t.add_column("model", no_wrap=True)
    for col in ("predicted", "90% range", "P(best)", "measured"):
        t.add_column(col, justify="right", no_wrap=True)
    for r in ranking:
        t.add_row(str(r.rank), r.name, f"{r.predicted:.3f}", f"{r.low:.3f}-{r.high:.3f}", f"{r.p_best:.1%}",
                  f"{last[r.name]:.3f}")
    out_console().print(t)
