"""`damoc prune CANDIDATE`: layer importance, pruning and sparse merging of one candidate."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from damoc.cli.common import echo_json, err_console, out_console, settings
from damoc.errors import DamocError
from damoc.prune.config import DEFAULT_CALIB_SAMPLES, DEFAULT_MAX_FRACTION, DEFAULT_SPARSITY, DEFAULT_THRESHOLD
from damoc.settings import Settings


def _resolve(candidate: str, base: str | None, s: Settings) -> tuple[str, Path, Path | None, str | None]:
    """(name, chat_path, base_path, base_problem) from a Chat folder or a registry name."""
    from damoc.registry.resolve import given_folder, resolve_candidate

    folder = given_folder(candidate, setting="candidate")
    if folder is not None:
        return folder.name, folder, Path(base).expanduser() if base else None, None
    rc = resolve_candidate(s, candidate)
    chat = Path(str(rc.chat_path)).expanduser()
    if not chat.is_dir():
        raise DamocError(f"{rc.name}: the Chat model is not available locally ({rc.chat_path})",
                         f"download it first: damoc registry pull {rc.name}")
    problem = None
    if base:
        base_path: Path | None = Path(base).expanduser()
    else:
        # the registry sets base_path only when sparse merging is supported, and says why not otherwise
        base_path = Path(str(rc.base_path)).expanduser() if rc.base_path else None
        if not rc.merge_supported:
            problem = rc.merge_reason or "the registry reports no usable Base"
    if base_path is not None and not base_path.is_dir():
        problem = problem or f"the Base model is not available locally ({base_path})"
    return rc.name, chat, base_path, problem


def _default_out(s: Settings, name: str, params: dict[str, Any]) -> Path:
    from damoc.fsutil import stable_hash

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"
    return s.cache_dir / "pruned" / f"{safe}-{stable_hash(params, length=10)}"


def _print_scores(result: dict[str, Any], threshold: float) -> None:
    from rich.table import Table
    from rich.text import Text

    con = out_console()
    scores = result.get("scores") or []
    pruned = set(result.get("pruned") or [])
    into = {int(k): v for k, v in (result.get("merged_into") or {}).items()}
    if scores:
        width = 30
        mark = min(width - 1, int(threshold * width))   # a score above the threshold fills this column
        t = Table(title=f"layer similarity (Eq. 3 cosine; | = threshold {threshold})", show_edge=False)
        t.add_column("layer", justify="right")
        t.add_column("cosine", justify="right")
        t.add_column("bar", no_wrap=True)
        t.add_column("", no_wrap=True)
        for i, sc in enumerate(scores):
            filled = max(0, min(width, int(round(sc * width))))
            bar = Text()
            for j in range(width):
                ch = "█" if j < filled else " "
                if j == mark:
                    ch = "|" if j >= filled else "┃"
                bar.append(ch, style=("red" if i in pruned else "cyan") if j < filled else "dim")
            tag, style = "", "bold red"
            if i in pruned:
                tag = f"pruned, merged into {into[i]}" if i in into else "pruned"
            elif sc > threshold and not (result.get("skip_reason") or "").startswith("pruning skipped"):
                style = "yellow"
                tag = ("kept: first layer" if i == 0 and result.get("keep_first", True) else
                       "kept: last layer" if i == len(scores) - 1 and result.get("keep_last", True) else
                       f"kept: {result.get('max_fraction', 0.25):.0%} cap")
            t.add_row(str(i), f"{sc:.3f}", bar, Text(tag, style=style) if tag else "")
        con.print(t)
    before, after = result["layers_before"], result["layers_after"]
    if result.get("skip_reason"):
        con.print(f"[yellow]{result['skip_reason']}[/]")
        return
    if result.get("rule") == "laco":
        how = f"collapsed with LaCo (paper reading): {result.get('collapsed_into')}"
    elif result.get("merge_rule"):
        how = f"merged with rule [bold]{result['merge_rule']}[/] (sparsity {result['sparsity']})"
    else:
        how = "dropped without merging"
    con.print(f"{before} -> {after} layers: pruned {sorted(pruned)}, {how}")
    if result.get("note"):
        con.print(f"[dim]{result['note']}[/]")
    con.print(f"pruned model: {result['out_path']}")


@click.command()
@click.argument("candidate", required=False)
@click.option("--base", "base", type=click.Path(file_okay=False), default=None,
              help="Base model folder (W_pre) when CANDIDATE is a Chat folder; overrides the registry's Base.")
@click.option("--threshold", type=float, default=DEFAULT_THRESHOLD, show_default=True,
              help="Prune layers whose input/output cosine exceeds this (0.80-0.95 tested).")
@click.option("--sparsity", type=float, default=DEFAULT_SPARSITY, show_default=True,
              help="Fraction of each task-vector tensor zeroed by magnitude before merging.")
@click.option("--rule", default=None, help="Merge rule (default: convex; 'drop' = plain dropping). See --rules.")
@click.option("--max-fraction", type=float, default=DEFAULT_MAX_FRACTION, show_default=True,
              help="At most this fraction of the layers is pruned.")
@click.option("--keep-first/--no-keep-first", default=True, show_default=True, help="Never prune layer 0.")
@click.option("--keep-last/--no-keep-last", default=True, show_default=True, help="Never prune the last layer.")
@click.option("--first-token", is_flag=True, help="Count each text's first token in the similarity.")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="Where to write the pruned model (default: under the data dir's cache).")
@click.option("--data", "data", type=click.Path(), default=None,
              help="Training file for calibration texts (default: texts sampled from the model itself).")
@click.option("--calib-samples", type=int, default=DEFAULT_CALIB_SAMPLES, show_default=True, help="Calibration samples from --data.")
@click.option("--allow-no-base", is_flag=True, help="Without a usable Base, prune without merging instead of skipping.")
@click.option("--method", type=click.Choice(["damoc", "laco"]), default="damoc", show_default=True,
              help="damoc = Eq. 3 scores + sparse merge; laco = the LaCo baseline (paper reading).")
@click.option("--device", default=None, help="auto, cpu, cuda, cuda:N (default: the settings' device).")
@click.option("--rules", "list_rules", is_flag=True, help="List the merge rules and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def prune(candidate: str | None, base: str | None, threshold: float, sparsity: float, rule: str | None,
          max_fraction: float, keep_first: bool, keep_last: bool, first_token: bool, out: str | None,
          data: str | None, calib_samples: int, allow_no_base: bool, method: str, device: str | None,
          list_rules: bool, as_json: bool) -> None:
    """Score the layers of CANDIDATE (a registry name or a Chat model folder), prune the redundant ones and merge
    their sparse Chat-minus-Base task vectors into the layers before them. Writes a loadable model."""
    from damoc.prune.merge import DEFAULT_RULE, MERGE_RULES

    if list_rules:
        rows = [{"name": e.name, "default": e.name == DEFAULT_RULE, "description": e.description} for e in MERGE_RULES]
        if as_json:
            echo_json(rows)
        else:
            for r in rows:
                click.echo(f"{r['name']:<16}{'(default) ' if r['default'] else ''}{r['description']}")
        return
    if not candidate:
        raise click.UsageError("missing CANDIDATE (a registry name or a Chat model folder)")
    if rule is not None:
        MERGE_RULES.entry(rule)   # unknown names fail here, with suggestions
    s = settings()
    from damoc.models import hf_offline_env, set_threads

    hf_offline_env(s)
    set_threads(s.threads)
    name, chat, base_path, problem = _resolve(candidate, base, s)
    dev = device or s.device
    params = dict(method=method, threshold=threshold, sparsity=sparsity, rule=rule or DEFAULT_RULE,
                  max_fraction=max_fraction, keep_first=keep_first, keep_last=keep_last, first_token=first_token,
                  data=str(Path(data).resolve()) if data else None, base=str(base_path) if base_path else None,
                  chat=str(chat.resolve()))
    out_dir = Path(out).expanduser() if out else _default_out(s, name, params)

    from damoc.console import ConsoleReporter

    texts = None
    with ConsoleReporter(err_console(), transient=True) as rep:
        if data:
            from damoc.models import load_tokenizer
            from damoc.prune.calibration import texts_from_file

            texts = texts_from_file(data, load_tokenizer(chat), n=calib_samples)
        if method == "laco":
            result = _run_laco(chat, out_dir, texts, threshold_cap=max_fraction, device=dev)
        else:
            from damoc.prune.api import prune_candidate

            result = prune_candidate(chat, base_path, out_dir, threshold=threshold, sparsity=sparsity, rule=rule,
                                     calib_texts=texts, allow_no_base=allow_no_base, reporter=rep, device=dev,
                                     max_fraction=max_fraction, keep_first=keep_first, keep_last=keep_last,
                                     first_token=first_token, base_problem=problem, candidate=name).to_dict()
    result = {"candidate": name, **result}
    if as_json:
        echo_json(result)
    else:
        _print_scores(result, threshold)


def _run_laco(chat: Path, out_dir: Path, texts: list[str] | None, *, threshold_cap: float, device: str) -> dict:
    """LaCo on the Chat model (paper reading), capped at the same fraction of layers as the damoc rule."""
    import math
    import time

    from damoc.fsutil import atomic_write_json
    from damoc.models import load_causal_lm, load_tokenizer
    from damoc.prune.calibration import self_calibration_texts
    from damoc.prune.laco import laco_prune

    t0 = time.perf_counter()
    model = load_causal_lm(chat, device=device)
    tok = load_tokenizer(chat)
    texts = texts or self_calibration_texts(model, tok, n=8)
    n = model.config.num_hidden_layers
    res = laco_prune(model, tok, texts, max_remove=int(math.floor(threshold_cap * n + 1e-9)))
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    d = {"layers_before": n, "layers_after": n - len(res.removed), "pruned": res.removed, "scores": [],
         "merge_rule": "laco-paper" if res.removed else None,
         "skip_reason": None if res.removed else "LaCo accepted no collapse",
         "out_path": str(out_dir) if res.removed else None, "seconds": time.perf_counter() - t0,
         "rule": "laco", "collapsed_into": res.collapsed_into, "trials": res.trials, "sparsity": None}
    atomic_write_json(out_dir / "damoc_prune.json", d)
    return d
