"""What a front end says about a plan and a dataset, as rich-markup lines: written once here, printed by
`damoc run --dry-run` and `damoc data inspect` and shown by the app's wizard."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape

from damoc.pipeline.config import RunConfig
from damoc.pipeline.plan import Plan
from damoc.pipeline.work import training_work
from damoc.registry.models import human_bytes
from damoc.settings import Settings

_MODEL_PARAMS = ("scorer_path", "model_path", "rewriter_path")      # the LMs a shared data stage loads


def plan_lines(plan: Plan, config: RunConfig, samples: int | None = None, settings: Settings | None = None,
               probe: bool | None = None) -> list[str]:
    """The plan of a run: what runs on what, which models score the data, every skipped stage with its reason,
    the training work (when the dataset's size is known; `probe`: may measure this machine's throughput first,
    a few seconds, cached) and the registry's pre-flight estimate."""
    ds = config.dataset
    n = len(config.candidates)
    test = f"test {escape(Path(ds.test).name)}" if ds.test else f"test = {ds.test_fraction:.0%} held out"
    lines = [f"[b]{escape(config.mode)}[/b] run of {n} candidate{'s' if n != 1 else ''} on "
             f"{escape(Path(ds.train).name)} ({test}): fine-tuning {escape(config.ft)}, seeds "
             f"{', '.join(map(str, config.seeds))}, metric {escape(config.evaluate.metric)}",
             f"{len(plan.cells)} cells: " + ", ".join(dict.fromkeys(c.stage.rsplit("-s", 1)[0] for c in plan.cells))]
    for cell in plan.data_cells:        # which model scores what: a user should see it before an hour is spent
        models = [f"{k.removesuffix('_path')} {escape(str(cell.params[k]))}" for k in _MODEL_PARAMS
                  if cell.params.get(k)]
        if models:
            lines.append(f"  {cell.stage} {escape(str(cell.params.get('method', '')))}: " + ", ".join(models))
    for c in plan.candidates:
        if c.error:
            lines.append(f"[red]{escape(c.name)}: cannot run: {escape(c.error)}[/]")
        elif c.download:
            lines.append(f"  {escape(c.name)}: [yellow]download[/] {escape(c.download)}, then "
                         + ", ".join(x.stage for x in plan.cells_of(c.name)))
        else:
            lines.append(f"  {escape(c.name)}: " + ", ".join(x.stage for x in plan.cells_of(c.name)))
            if c.needs_remote_code:
                lines.append(f"    [magenta]needs remote code[/] (auto_map in config.json): " +
                             ("trusted, by your opt-in" if c.trust_remote_code else
                              "not trusted, loaded with the library's own classes (opt in: damoc registry add "
                              "--trust-remote-code)"))
    lines += [f"[yellow]skip[/] {escape(s['candidate'])}/{escape(s['stage'])}: {escape(s['reason'])}"
              for s in plan.skipped if s["stage"] != "*"]
    if plan.downloads:
        total = sum(c.download_bytes or 0 for c in plan.downloads)
        approx = any("≈" in c.download or c.download_bytes is None for c in plan.downloads)
        lines.append(f"[b]downloads[/b] needed before this runs: {len(plan.downloads)} candidate"
                     f"{'s' if len(plan.downloads) != 1 else ''}, {human_bytes(total, approx=approx)} "
                     f"(damoc registry pull {' / '.join(escape(c.name) for c in plan.downloads)})")
    work = training_work(config, samples, settings=settings, probe=probe) if samples else None
    if work is not None:
        lines.append(f"[b]time[/b] {escape(work.describe())}")
    if plan.preflight:
        lines.append("[b]pre-flight[/b] (disk, memory; formula in docs/registry.md)")
        lines += preflight_lines(plan.preflight)
    lines += [f"[b yellow]warning:[/] {escape(w)}" for w in plan.warnings]
    return lines


def preflight_lines(pf: dict[str, Any]) -> list[str]:
    """The registry's pre-flight estimate (`Preflight.to_dict()`): one line per candidate, the totals, warnings."""
    def mem(m: Any) -> str:
        return human_bytes(m["total"]) if isinstance(m, dict) and m.get("total") is not None else "?"

    out = []
    for c in pf.get("candidates", []):
        mm = c.get("memory") or {}
        dl = "local" if c.get("local") and not c.get("download_bytes") else \
            f"download {human_bytes(c.get('download_bytes'), approx=bool(c.get('download_estimated')))}"
        out.append(f"  {escape(str(c.get('name')))}: {dl} · memory calib {mem(mm.get('calibration'))}, full "
                   f"{mem(mm.get('full_ft'))}, LoRA {mem(mm.get('lora_ft'))} · run disk "
                   f"{human_bytes(c.get('work_disk_bytes'))}")
        m = c.get("merge_check") or {}
        if m.get("checked") == "hub" or (not c.get("local") and m.get("reason")):
            style = "green" if m.get("supported") else "yellow" if m.get("supported") is None else "red"
            out.append(f"    sparse merge: [{style}]{escape(str(m.get('reason')))}[/]")
    t = pf.get("totals") or {}
    if t:
        avail = t.get("memory_available_bytes")
        out.append(f"  total: download {human_bytes(t.get('download_bytes'))}, run outputs "
                   f"{human_bytes(t.get('work_disk_bytes'))} (disk free {human_bytes(t.get('disk_free_bytes'))}), "
                   f"peak memory {human_bytes(t.get('peak_memory_bytes'))}"
                   + (f" of {human_bytes(avail)} available" if avail else "") + f" on {escape(str(pf.get('device')))}")
    out += [f"  [yellow]{escape(str(w))}[/]" for w in pf.get("warnings", [])]
    return out


def dataset_lines(rep: dict[str, Any], *, max_problems: int, hints: bool = False, lengths: bool = True) -> list[str]:
    """A `damoc.data.inspect_dataset` report: the counts, the token lengths (`lengths`), then each problem with
    its line and field (the first `max_problems`; `hints` adds each problem's fix), or that there is none."""
    lines = [f"[b]{escape(rep['format'])}[/b] ({escape(rep['file_type'])}): {rep['samples']} samples from "
             f"{rep['records']} records" + (f", {rep['skipped']} skipped" if rep.get("skipped") else "")
             + (f", {rep['multiple_choice']} multiple-choice" if rep.get("multiple_choice") else "")
             + (f", {rep['with_context']} with context" if rep.get("with_context") else "")]
    total = rep.get("token_lengths", {}).get("total")
    if total and lengths:
        lines.append(f"length ({escape(rep['tokenizer'])} tokens): median {total['median']}, p95 {total['p95']}, "
                     f"max {total['max']}")
    probs = rep.get("problems", [])
    if not probs:
        return lines + ["[green]no problems found[/]"]
    lines.append(f"[red]{len(probs)} problem(s):[/]")
    for p in probs[:max_problems]:
        where = f"line {p['line']}" if p.get("line") is not None else "file"
        fld = f", field {p['field']!r}" if p.get("field") else ""
        fix = f" [dim]({escape(p['hint'])})[/]" if hints and p.get("hint") else ""
        lines.append(f"  {escape(p['severity'])}: {where}{escape(fld)}: {escape(p['message'])}{fix}")
    if len(probs) > max_problems:
        lines.append(f"  … {len(probs) - max_problems} more (damoc data inspect --json)")
    return lines

