"""`damoc compress DATA --out FILE`: token compression of a training set, BERTScore gate, iterative rewriting."""
from __future__ import annotations

from typing import Any

import click

from damoc.cli.common import echo_json, out_console, settings
from damoc.compress.config import CompressParams
from damoc.errors import ConfigError


def _parse_rates(values: tuple[str, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for v in values:
        name, sep, num = v.partition("=")
        if not sep:
            raise click.BadParameter(f"{v!r}: use FIELD=RATE, e.g. question=0.7", param_hint="--field-rate")
        try:
            out[name.strip()] = float(num)
        except ValueError:
            raise click.BadParameter(f"{v!r}: {num!r} is not a number", param_hint="--field-rate") from None
    return out


def _print_stats(st: dict[str, Any]) -> None:
    from rich.table import Table

    con = out_console()
    t = Table(title=f"compression ({st['compressor']}, target rate {st['rate']})", show_edge=False)
    t.add_column("field")
    t.add_column("keep rate (compressed)", justify="right")
    t.add_column("keep rate (final)", justify="right")
    for f, v in st["keep_rate_by_field"].items():
        t.add_row(f, f"{st['keep_rate_by_field_compressed'][f]:.3f}", f"{v:.3f}")
    t.add_row("[bold]all[/]", f"[bold]{st['keep_rate_compressed']:.3f}[/]", f"[bold]{st['keep_rate']:.3f}[/]")
    con.print(t)
    n = st["samples"] or 1
    g = st["gate"]
    if g.get("enabled"):
        rounds = [k for k in st if k.startswith("rewritten_round_")]
        parts = [f"passed directly {st['passed_direct']} ({st['passed_direct'] / n:.1%})"]
        parts += [f"round {k.rsplit('_', 1)[1]} {st[k]} ({st[k] / n:.1%})" for k in rounds]
        parts.append(f"fell back to original {st['fell_back']} ({st['fell_back'] / n:.1%})")
        con.print("gate: " + ", ".join(parts))
        b = st["bertscore"]
        if b.get("n"):
            con.print(f"BERTScore F1 of the compressed text (raw, {g['encoder'].rsplit('/', 1)[-1] or g['encoder']}, "
                      f"threshold {g['threshold']:.3f} {g['threshold_source']}): mean {b['mean']:.3f}, "
                      f"p10 {b['p10']:.3f}, median {b['p50']:.3f}, min {b['min']:.3f}")
    else:
        con.print("gate: off (baseline method; pass --gate to check BERTScore)")
    sec = st["seconds"]
    con.print(f"{st['samples']} samples, {st['tokens_original']} -> {st['tokens_kept']} tokens; "
              f"{st['tokens_per_second']:.0f} tokens/s compressing; {sec['total']:.1f}s total"
              + (" (cached)" if st.get("cached") else ""))


@click.command()
@click.argument("data", type=click.Path(), required=False)   # FILE or dataset_info.json:NAME; the loader checks it
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None, help="Write the compressed JSONL here.")
@click.option("--rate", type=float, default=CompressParams().rate, show_default=True, help="Share of tokens kept.")
@click.option("--field-rate", "field_rates", multiple=True, metavar="FIELD=RATE",
              help="Per-field rate (instruction, question, context, answer); repeatable.")
@click.option("--compressor", default="damoc", show_default=True,
              help="Method (damoc, llmlingua, longllmlingua), or, when not a method name, the model (as --model).")
@click.option("--model", default=None, help="Small LM that scores tokens: registry name or model folder.")
@click.option("--rewriter", default=None, help="LLM that rewrites samples under the threshold (name or folder).")
@click.option("--threshold", type=float, default=None,
              help="BERTScore F1 gate (raw F1 of the encoder). Default: the encoder's paper-equivalent of 0.9.")
@click.option("--max-rounds", type=int, default=2, show_default=True, help="Rewrite rounds before falling back.")
@click.option("--examples", "n_examples", type=int, default=2, show_default=True,
              help="Passing samples shown to the rewriter as examples.")
@click.option("--contrastive", is_flag=True, help="Answer tokens by LongLLMLingua's contrastive score.")
@click.option("--gate/--no-gate", default=None, help="BERTScore gate (default: on for damoc, off for baselines).")
@click.option("--encoder", default=None, help="BERTScore encoder (HF id or folder; default: settings / MiniLM).")
@click.option("--granularity", type=click.Choice(["word", "token"]), default="word", show_default=True,
              help="Drop whole words (text rebuilt from the source) or single tokens.")
@click.option("--window", type=int, default=200, show_default=True, help="Tokens per iterative window.")
@click.option("--force-keep", default=None, metavar="REGEX", help="Always keep words matching REGEX (e.g. '\\d').")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--format", "fmt", default="auto", show_default=True, help="Record shape of DATA.")
@click.option("--skip-bad", is_flag=True, help="Skip bad records instead of stopping at the first.")
@click.option("--limit", type=int, default=None, help="Only the first N samples.")
@click.option("--device", default=None, help="auto, cpu, cuda, cuda:N (default: the settings' device).")
@click.option("--no-cache", is_flag=True, help="Recompute even when a cached result exists.")
@click.option("--list", "list_methods", is_flag=True, help="List the compression methods and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the stats as one JSON object on stdout.")
def compress(data: str | None, out: str | None, rate: float, field_rates: tuple[str, ...], compressor: str,
             model: str | None, rewriter: str | None, threshold: float | None, max_rounds: int, n_examples: int,
             contrastive: bool, gate: bool | None, encoder: str | None, granularity: str, window: int,
             force_keep: str | None, seed: int, fmt: str, skip_bad: bool, limit: int | None, device: str | None,
             no_cache: bool, list_methods: bool, as_json: bool) -> None:
    """Compress the tokens of the training samples in DATA to about --rate of their length (DaMoC sec. 3.2):
    question fields by perplexity, answers by question-conditioned perplexity, then a BERTScore gate and LLM
    rewriting of the samples that fail it. Writes the compressed samples (originals kept under "original")."""
    from damoc.compress import COMPRESSORS, CompressConfig

    if list_methods:
        rows = [{"name": e.name, "family": e.family, "gate": e.extra.get("gate", True),
                 "description": e.description} for e in COMPRESSORS]
        if as_json:
            echo_json(rows)
        else:
            for r in rows:
                click.echo(f"{r['name']:<15}{r['description']}")
        return
    if not data:
        raise click.UsageError("missing DATA (a JSONL/JSON/CSV/Parquet training file)")
    if not out:
        raise click.UsageError("missing --out FILE (where the compressed samples go)")
    # `--compressor NAME` doubles as the model when NAME is not a method (the command line names the model)
    method = compressor
    if compressor not in COMPRESSORS:
        if model and model != compressor:
            COMPRESSORS.entry(compressor)            # unknown method next to an explicit --model: say so
        model, method = compressor, "damoc"
    s = settings()
    from damoc.models import hf_offline_env

    hf_offline_env(s)
    cfg = CompressConfig(rate=rate, rates=_parse_rates(field_rates), compressor=method, model=model,
                         threshold=threshold, rewriter=rewriter, max_rounds=max_rounds, n_examples=n_examples,
                         seed=seed, contrastive=contrastive, gate=gate, encoder=encoder, granularity=granularity,
                         window=window, force_keep=force_keep, use_cache=not no_cache, device=device)
    cfg.validate()
    if not cfg.model:
        raise ConfigError("no compressor model given",
                          "pass --model NAME|FOLDER (or --compressor NAME with a model name); "
                          "see `damoc registry list` or `damoc zoo build`")
    from damoc.compress import compress_dataset
    from damoc.console import ConsoleReporter
    from damoc.data import load_samples, write_samples

    loaded = load_samples(data, format=fmt, skip_bad=skip_bad, limit=limit)
    samples = loaded.samples[:limit] if limit else loaded.samples
    with ConsoleReporter(transient=as_json) as rep:
        res = compress_dataset(samples, cfg, reporter=rep, settings=s)
    write_samples(res.samples, out)
    stats = dict(res.stats)
    stats["out"] = str(out)
    stats["data"] = str(data)
    if as_json:
        echo_json(stats)
    else:
        _print_stats(stats)
        click.echo(f"wrote {len(res.samples)} samples to {out}")
