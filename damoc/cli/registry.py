"""`damoc registry ...`: list, show, add, remove, restore, check, scan, pull, export, import, preflight, reset."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rich.markup import escape

from damoc.cli.common import echo_json, err_console, out_console, settings
from damoc.errors import DamocError
from damoc.registry.add import unchecked_note

if TYPE_CHECKING:
    from damoc.registry.models import Candidate
    from damoc.registry.store import RegistryStore


def _store() -> RegistryStore:
    from damoc.registry.store import RegistryStore

    return RegistryStore(settings())


SHORT = {"no_base": "✗ no Base (W_pre)", "base_incompatible": "✗ Base incompatible", "not_local": "↓ not local",
         "unreadable": "✗ unreadable"}


def _flag(c: Candidate, short: bool = False) -> str:
    if c.merge_supported:
        return "[green]✓ sparse merge[/]"
    state = c.capability.state if c.capability else ""
    hub = c.capability.hub_check if c.capability else None
    if short and hub is not None:          # not local, but checked on the hub (headers, no weights)
        return "[green]↓ merge ok (hub)[/]" if hub.merge_supported else "[red]↓ ✗ incompatible (hub)[/]"
    if short and c.unchecked:
        return "[yellow]? not checked[/]"
    style = "yellow" if state in ("no_base", "not_local") else "red"
    return f"[{style}]{escape(SHORT.get(state, state) if short else c.merge_reason)}[/]"


def _where(c: Candidate) -> str:
    cap = c.capability
    if cap is None:
        return "?"
    loc = cap.chat_location
    if c.base is not None and cap.base_location != loc:
        loc += f" / {cap.base_location}"
    return loc


def _size(c: Candidate) -> str:
    from damoc.registry.models import human_bytes

    s = c.summary()
    if s["local"] and not s["download_bytes"]:
        return human_bytes(s["size_bytes"])
    cap = c.capability
    return human_bytes(cap.download_bytes, approx=cap.download_estimated) + " ↓" if cap and cap.download_bytes else "?"


@click.group()
def registry() -> None:
    """Manage candidate Chat/Base pairs (the built-in catalog plus your own models).

    The capability column is computed from config.json and safetensors headers: sparse merging needs a Base (W_pre)
    whose layer tensors match the Chat's."""


@registry.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (stable keys, see docs/registry.md).")
@click.option("--family", default=None, help="Only this family (llama, qwen, zoo, ...).")
@click.option("--source", type=click.Choice(["catalog", "user", "scan", "zoo"]), default=None,
              help="Only entries from this source.")
@click.option("--local", "local_only", is_flag=True, help="Only candidates whose Chat is on this machine.")
def list_cmd(as_json: bool, family: str | None, source: str | None, local_only: bool) -> None:
    """List candidates with their location, size and sparse-merge capability."""
    cands = _store().list(family=family, source=source)
    if local_only:
        cands = [c for c in cands if c.capability and c.capability.local]
    if as_json:
        echo_json([c.summary() for c in cands])
        return
    from rich.table import Table

    from damoc.registry.models import human_count

    from rich import box

    con = out_console()
    # the full table needs ~150 columns; narrower terminals drop columns (`show NAME` has everything)
    full, medium = con.width >= 150, con.width >= 100
    t = Table(title=f"{len(cands)} candidates", title_justify="left", box=box.SIMPLE_HEAD)
    t.add_column("name", no_wrap=True)
    cols = [("family", full), ("chat", medium), ("base", medium), ("where", True), ("size", True),
            ("params", full), ("layers", full), ("capability", True)]
    for col, show_it in cols:
        if show_it:
            t.add_column(col, no_wrap=col in ("size", "params", "capability", "where"),
                         overflow="fold")
    for c in cands:
        flags = (" [red]gated[/]" if c.chat_facts.gated else "") + \
            ((" [magenta]remote code (trusted)[/]" if c.trust_remote_code else " [magenta]needs remote code[/]")
             if c.needs_remote_code else "")
        values = {"family": c.family, "chat": c.chat.id, "base": c.base.id if c.base else "[dim]—[/]",
                  "where": _where(c), "size": _size(c), "params": human_count(c.chat_facts.parameters),
                  "layers": str(c.chat_facts.layers or "?"), "capability": _flag(c, short=True)}
        t.add_row(c.name + ("*" if c.paper else "") + (flags if full else ""),
                  *[values[col] for col, show_it in cols if show_it])
    con.print(t)
    con.print("[dim]* one of the DaMoC paper's eight candidates; ↓ = to download; ≈ = estimated from the catalog "
              "(confirm with `damoc registry check --online`); why: `damoc registry show NAME`[/]")


@registry.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def show(name: str, as_json: bool) -> None:
    """Everything known about one candidate: facts of Chat and Base, where they are, and the capability."""
    c = _store().get(name)
    data = {**c.summary(), "capability": c.capability.to_dict() if c.capability else None,
            "chat_facts": c.chat_facts.to_dict(), "base_facts": c.base_facts.to_dict() if c.base_facts else None}
    if as_json:
        echo_json(data)
        return
    con = out_console()
    con.print(f"[bold]{c.name}[/]  ({escape(c.family or 'no family')}, {c.source})")
    con.print(f"  chat  {c.chat}  [{data['chat_location']}] {data['chat_path'] or ''}")
    con.print(f"  base  {c.base or '—'}" + (f"  [{data['base_location']}] {data['base_path'] or ''}" if c.base else
                                             f"  ({c.no_base_reason})" if c.no_base_reason else ""))
    con.print(f"  capability  {_flag(c)}")
    if c.needs_remote_code:
        con.print("  [magenta]needs remote code[/] (auto_map in config.json): " +
                  ("trusted for this candidate (added with --trust-remote-code)" if c.trust_remote_code else
                   "not trusted; damoc and the hand-off use the library's own classes. Opt in with: damoc registry "
                   f"add --chat {escape(str(c.chat))} --name {c.name} --trust-remote-code --replace"))
    for note in (c.capability.notes if c.capability else []):
        con.print(f"    note: {note}")
    for role, f in (("chat", c.chat_facts), ("base", c.base_facts)):
        if f is None:
            continue
        con.print(f"  {role} facts (from {f.origin}):")
        for k, v in f.to_dict().items():
            if v not in (None, [], "") and k not in ("origin",):
                con.print(f"    {k:<18} {v}")
    if c.notes:
        con.print(f"  notes  {c.notes}")


@registry.command()
@click.option("--chat", "chat", required=True, help="Chat/instruct model: folder or hub id (org/name).")
@click.option("--base", "base", default=None, help="Its Base (pre-trained, W_pre): folder or hub id.")
@click.option("--name", default=None, help="Candidate name (default: from the Chat folder or repo name).")
@click.option("--family", default=None, help="Family label (default: the architecture).")
@click.option("--chat-revision", default=None, help="Hub revision of the Chat (branch, tag or commit).")
@click.option("--base-revision", default=None, help="Hub revision of the Base.")
@click.option("--notes", default="", help="Free text kept with the entry.")
@click.option("--replace", is_flag=True, help="Overwrite an existing entry of the same name.")
@click.option("--trust-remote-code", is_flag=True,
              help="Run this model's own code (auto_map in config.json) when damoc or the hand-off loads it. "
                   "Off by default: only for models whose code you have read.")
@click.option("--json", "as_json", is_flag=True, help="Print the new entry as JSON.")
def add(chat: str, base: str | None, name: str | None, family: str | None, chat_revision: str | None,
        base_revision: str | None, notes: str, replace: bool, trust_remote_code: bool, as_json: bool) -> None:
    """Register a candidate. Folders are read (config.json, safetensors headers) and checked now; hub ids are
    registered as they are (nothing is downloaded; `damoc registry pull NAME` later)."""
    from damoc.registry.add import add_candidate

    c = add_candidate(settings(), chat, base, name=name, family=family, chat_revision=chat_revision,
                      base_revision=base_revision, notes=notes, replace=replace, trust_remote_code=trust_remote_code)
    if as_json:
        echo_json(c.summary())
        return
    err_console().print(f"added [bold]{c.name}[/]: "
                        f"{'sparse merging supported' if c.merge_supported else escape(c.merge_reason)}")
    if c.unchecked:
        err_console().print(f"[yellow]note[/]: {escape(unchecked_note(c))}")
    if c.needs_remote_code and not c.trust_remote_code:
        err_console().print("[magenta]note[/]: it needs remote code (auto_map in config.json), which is not trusted; "
                            "add it again with --trust-remote-code --replace to opt in")


@registry.command()
@click.argument("name")
def remove(name: str) -> None:
    """Remove a candidate (built-in catalog entries are hidden; `restore` shows them again)."""
    store = _store()
    c = store.find(name)
    what = store.remove(name)
    msg = f"removed {c.name}" if what == "removed" else \
        f"hid built-in {c.name} (bring it back with `damoc registry restore {c.name}`)"
    err_console().print(msg)


@registry.command()
@click.argument("name")
def restore(name: str) -> None:
    """Show a hidden built-in catalog entry again."""
    _store().restore(name)
    err_console().print(f"restored {name}")


@registry.command()
@click.argument("name", required=False)
@click.option("--online", is_flag=True, help="Also confirm gated/size/licence facts through the hub API.")
@click.option("--timeout", default=15.0, show_default=True, help="Seconds per hub request (with --online).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def check(name: str | None, online: bool, timeout: float, as_json: bool) -> None:
    """Recompute capabilities from the files on this machine (and, with --online, facts from the hub)."""
    store = _store()
    cands = [store.get(name)] if name else store.list()
    online_results: dict[str, Any] = {}
    if online:
        from damoc.registry.hub import check_online

        for r in check_online(store, cands, timeout=timeout):
            online_results[r.name] = {"ok": r.ok, "errors": r.errors, "facts": r.facts, "hub_check": r.hub_check}
        cands = [store.get(c.name) for c in cands]
    rows = []
    for c in cands:
        cap = c.capability
        rows.append({**c.summary(), "notes_capability": cap.notes if cap else [],
                     "detail": cap.detail if cap else {}, "online": online_results.get(c.name)})
    if as_json:
        echo_json([{**r, "online": r["online"] and {**r["online"], "hub_check": r["online"]["hub_check"] and
                                                     r["online"]["hub_check"].to_dict()}} for r in rows])
        return
    con = out_console()
    for c, row in zip(cands, rows):
        con.print(f"[bold]{c.name:<28}[/] {_flag(c)}")
        for n in row["notes_capability"]:
            con.print(f"    note: {n}")
        if row["online"]:
            for e in row["online"]["errors"]:
                con.print(f"    [red]hub: {e}[/]")
            if row["online"]["ok"]:
                con.print(f"    hub: confirmed ({'gated' if c.chat_facts.gated else 'not gated'}, "
                          f"{_size(c)})")
            hub = row["online"].get("hub_check")
            if hub is not None:
                style = "green" if hub.merge_supported else "red"
                con.print(f"    [{style}]{escape(hub.describe())}[/] (config.json and safetensors headers, "
                          "no weights downloaded)")
    if any(r["online"] and not r["online"]["ok"] for r in rows):
        raise click.exceptions.Exit(1)


@registry.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--no-hf-cache", is_flag=True, help="Do not look in the Hugging Face cache.")
@click.option("--dry-run", is_flag=True, help="Report what would be registered, register nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def scan(paths: tuple[Path, ...], no_hf_cache: bool, dry_run: bool, as_json: bool) -> None:
    """Find models in the Hugging Face cache and in PATHs, pair Chat with Base, register the new ones."""
    from damoc.registry.scan import scan as do_scan

    rep = do_scan(_store(), list(paths), hf_cache=not no_hf_cache, dry_run=dry_run)
    if as_json:
        echo_json(rep.to_dict() | {"dry_run": dry_run})
        return
    con = out_console()
    verb = "would add" if dry_run else "added"
    for c in rep.added:
        con.print(f"{verb} [bold]{c.name}[/]: chat {c.chat.id}" + (f", base {c.base.id}" if c.base else ", no Base"))
    for m, n in rep.known:
        con.print(f"[dim]known  {m} (candidate {n})[/]")
    for m, r in rep.skipped:
        con.print(f"[yellow]skipped[/] {m}: {r}")
    if not (rep.added or rep.known or rep.skipped):
        con.print("no models found")


@registry.command()
@click.argument("name")
@click.option("--base-only", is_flag=True, help="Only the Base (W_pre).")
@click.option("--chat-only", is_flag=True, help="Only the Chat.")
@click.option("--timeout", default=15.0, show_default=True, help="Seconds to wait for each hub answer.")
def pull(name: str, base_only: bool, chat_only: bool, timeout: float) -> None:
    """Download a candidate's Chat and Base into the Hugging Face cache (with progress; re-run to resume)."""
    from damoc.console import ConsoleReporter
    from damoc.registry.hub import pull as do_pull

    if base_only and chat_only:
        raise click.UsageError("--base-only and --chat-only exclude each other")
    which = "base" if base_only else "chat" if chat_only else "both"
    with ConsoleReporter(err_console()) as rep:
        paths = do_pull(settings(), name, which=which, timeout=timeout, reporter=rep)
    for role, p in paths.items():
        err_console().print(f"{role}: {p}")


@registry.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--all", "include_catalog", is_flag=True, help="Include the built-in catalog entries too.")
def export_cmd(file: Path, include_catalog: bool) -> None:
    """Write your entries (not the built-in catalog, unless --all) to a JSON file for `import`."""
    from damoc.fsutil import atomic_write_json

    recs = [c.to_record() for c in _store().records() if include_catalog or c.source != "catalog"]
    for r in recs:
        if r["source"] == "catalog":
            r["source"] = "user"
    atomic_write_json(file, {"damoc_registry_export": 1, "candidates": recs})
    err_console().print(f"exported {len(recs)} entries to {file}")


@registry.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--replace", is_flag=True, help="Overwrite entries of the same name.")
def import_cmd(file: Path, replace: bool) -> None:
    """Add the entries of a file written by `export` (all or nothing)."""
    from damoc.registry.models import Candidate

    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        recs = data["candidates"] if isinstance(data, dict) else None
        if not isinstance(recs, list):
            raise ValueError("no 'candidates' list")
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, KeyError, RecursionError) as e:
        raise DamocError(f"{file}: not a registry export ({type(e).__name__}: {e})",
                         "use a file written by `damoc registry export`") from None
    from damoc.registry.store import candidate_problem

    cands, untrusted = [], []
    for i, r in enumerate(recs, start=1):
        why = candidate_problem(r) if isinstance(r, dict) else f"is {type(r).__name__}, expected an object"
        if why:
            raise DamocError(f"{file}: entry #{i} is malformed ({why})",
                             "fix the entry or remove it; nothing was imported")
        c = Candidate.from_record(r)
        if c.source == "catalog":
            c.source = "user"
        if c.trust_remote_code:      # a file from elsewhere never carries trust in: the user opts in here
            c.trust_remote_code = False
            untrusted.append(c.name)
        cands.append(c)
    catalog = {c.name.lower() for c in _store().records(include_hidden=True) if c.source == "catalog"}
    cands = [c for c in cands if c.name.lower() not in catalog]   # catalog entries exported with --all
    _store().add_many(cands, replace=replace)
    err_console().print(f"imported {len(cands)} entries from {escape(str(file))}")
    if untrusted:
        err_console().print(f"[magenta]note[/]: remote code is not trusted for {', '.join(untrusted)} (the file "
                            "said so; opt in with registry add --trust-remote-code --replace)")


@registry.command("preflight")
@click.argument("names", nargs=-1, required=True)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Run setting, e.g. --set seq_len=1024 --set finetune=full --set batch_size=8.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A run configuration file (JSON, YAML or TOML).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def preflight_cmd(names: tuple[str, ...], sets: tuple[str, ...], config_file: Path | None, as_json: bool) -> None:
    """Disk to download, memory for calibration and full/LoRA fine-tuning, and skipped stages, before a run."""
    from damoc.registry.models import human_bytes
    from damoc.registry.preflight import preflight

    config: dict[str, Any] = _read_config(config_file) if config_file else {}
    for s in sets:
        k, eq, v = s.partition("=")
        if not eq:
            raise click.BadParameter(f"{s!r} is not KEY=VALUE", param_hint="--set")
        config[k.strip()] = v.strip()
    from damoc.registry.assess import merge_check

    s = settings()
    pf = preflight(s, list(names), config)
    store = _store()
    merges = {c.name: merge_check(store.get(c.name)) for c in pf.candidates}
    if as_json:
        d = pf.to_dict()
        for c in d["candidates"]:
            c["merge_check"] = merges[c["name"]]
        echo_json(d)
        return
    from rich.table import Table

    con = out_console()
    from rich import box

    t = Table(title=f"pre-flight on {pf.device} ({pf.bytes_per_weight}-byte weights, seq_len {pf.config.seq_len}, "
                    f"batch {pf.config.batch_size})", title_justify="left", box=box.SIMPLE_HEAD,
              pad_edge=False, padding=(0, 1))
    t.add_column("candidate", no_wrap=True)
    for col in ("pull", "calib", "full FT", "LoRA FT", "disk"):
        t.add_column(col, no_wrap=True, justify="right")
    for c in pf.candidates:
        mem = lambda m: human_bytes(m.total) if m else "?"
        t.add_row(c.name, human_bytes(c.download_bytes, approx=c.download_estimated) if c.download_bytes else "local",
                  mem(c.calibration), mem(c.full_ft), mem(c.lora_ft), human_bytes(c.work_disk_bytes))
    con.print(t)
    con.print(f"total download {human_bytes(pf.total_download_bytes)}, run outputs up to "
              f"{human_bytes(pf.total_work_disk_bytes)}, peak memory {human_bytes(pf.peak_memory_bytes)} "
              f"(available {human_bytes(pf.memory_available_bytes)}); formula: docs/registry.md")
    for c in pf.candidates:
        dl = next((st for st in c.skipped if st.stage == "download"), None)
        if dl is not None:
            con.print(f"[yellow]{c.name}[/]: not local, every stage waits: {dl.reason.split(': ', 1)[-1]}")
            m = merges[c.name]
            if m["checked"] == "hub":
                con.print(f"  sparse merge {escape(str(m['reason']))}")
            continue
        groups: dict[tuple[str, str], list[str]] = {}
        for st in c.skipped:
            groups.setdefault((st.status, st.reason), []).append(st.stage)
        for (status, reason), stages in groups.items():
            con.print(f"[yellow]{c.name}[/]: {' + '.join(stages)} {'blocked' if status == 'blocked' else 'skipped'}: "
                      f"{reason.removeprefix('pruning skipped: ')}")
    for w in pf.warnings:
        con.print(f"[yellow]warning:[/] {w}")


def _read_config(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parser error is the same "cannot read" for the user
        raise DamocError(f"{path}: cannot read the run configuration ({e})", "fix the file") from None
    if not isinstance(data, dict):
        raise DamocError(f"{path}: the run configuration must be a mapping", "fix the file")
    return data


@registry.command()
@click.option("--yes", is_flag=True, help="Do it without asking.")
def reset(yes: bool) -> None:
    """Start an empty registry file; the current one is kept as a backup next to it."""
    store = _store()
    if not yes:
        click.confirm(f"move {store.path} aside and start an empty registry?", abort=True)
    backup = store.reset()
    err_console().print(f"registry reset; previous file kept as {backup}" if backup else "no registry file yet")
