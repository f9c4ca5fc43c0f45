"""How the registry screen shows a candidate: its table row, its sort keys and the detail pane with the reason
behind each flag (capabilities are computed by the library; this only lays them out)."""
from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.text import Text

from damoc.facade import Candidate, CheckResult, ScanReport, human_bytes, human_count, unchecked_note

# (key, label, minimum width): each column widens to its widest value; the name takes the rest (abbreviated with
# `…`, in full in the detail pane)
COLUMNS = [("sel", "", 1), ("name", "name", 14), ("merge", "merge", 8), ("wpre", "W_pre", 5),
           ("where", "where", 11), ("params", "params", 6), ("layers", "layers", 6), ("flags", "flags", 5)]
# the first step on a machine with no runnable candidate (registry screen and wizard say the same)
FIRST_STEP = ("no candidate on this machine yet: [b]z[/b] builds the demo zoo (minutes, once) · [b]+[/b] adds a "
              "folder · [b]s[/b] scans the HF cache · [b]p[/b] pulls a pair")
SORTS = ("local first", "name", "parameters", "layers", "mergeable first")
SOURCE_ORDER = {"zoo": 0, "user": 1, "scan": 2, "catalog": 3}
MERGE_LABEL = {"supported": ("yes", "green"), "no_base": ("no Base", "red"), "base_incompatible": ("incompat", "red"),
               "not_local": ("download", "yellow"), "unreadable": ("unreadable", "red")}
WHERE_LABEL = {"zoo": "zoo", "folder": "folder", "hf-cache": "cache", "hf-cache-partial": "partial", "hub": "hub",
               "missing": "missing"}


def candidate_row(c: Candidate, selected: bool) -> dict[str, Any]:
    """One table row from a registry Candidate (its `summary()` is the registry's stable flat view)."""
    s = c.summary()
    cap = c.capability
    state = s.get("state") or ""
    label, style = MERGE_LABEL.get(state, (state or "?", ""))
    if cap is not None and cap.hub_check is not None and state == "not_local":   # checked on the hub, not local
        label, style = ("hub ok", "green") if cap.hub_check.merge_supported else ("hub ✗", "red")
    elif c.unchecked:
        label, style = "unchecked", "yellow"          # a hub id nothing confirmed: it may not exist
    if c.base is None:
        wpre = Text("none", style="red")
    elif cap is not None and cap.base_path:
        wpre = Text("yes", style="green")
    elif c.base.kind == "hub":
        wpre = Text("hub", style="yellow")            # declared, not downloaded
    else:
        wpre = Text("gone", style="red")              # a folder that is no longer there
    loc = WHERE_LABEL.get(s.get("chat_location") or "", s.get("chat_location") or "?")
    if s.get("local"):
        where = f"{loc} {human_bytes(s.get('size_bytes'))}" if s.get("size_bytes") else loc
    else:
        need = s.get("download_bytes")
        where = f"{loc} {human_bytes(need, approx=bool(cap and cap.download_estimated))}" if need else loc
    flags = ("G" if s.get("gated") else "") + ("R" if s.get("needs_remote_code") else "") + (
        "P" if s.get("paper") else "")
    return {"key": c.name, "sel": Text("●", style="bold") if selected else "", "name": c.name,
            "merge": Text(label, style=style), "wpre": wpre, "where": _tight(where),
            "params": human_count(s.get("parameters")) if s.get("parameters") else "?",
            "layers": str(s.get("layers") or "?"), "flags": flags}


def _tight(text: str) -> str:
    """`hub ≈15.7 GB` -> `hub ≈15.7GB`: the size column fits 80 columns."""
    for unit in ("KB", "MB", "GB", "TB"):
        text = text.replace(f" {unit}", unit)
    return text


def sort_key(mode: str, c: Candidate) -> tuple[Any, ...]:
    s = c.summary()
    if mode == "name":
        return (c.name.lower(),)
    if mode == "parameters":
        return (s.get("parameters") or 0, c.name.lower())
    if mode == "layers":
        return (s.get("layers") or 0, c.name.lower())
    if mode == "mergeable first":
        return (not s.get("merge_supported"), not s.get("local"), c.name.lower())
    # local first: what can run now on top (the demo zoo, the user's folders), the catalog's downloads below
    return (not s.get("local"), SOURCE_ORDER.get(s.get("source") or "", 9), c.name.lower())


def detail_text(c: Candidate) -> str:
    """The reasons behind each flag, for the detail pane."""
    s = c.summary()
    cap = c.capability
    lines = [f"[b]{escape(c.name)}[/b]  [dim]{escape(s.get('source') or '')}"
             f"{' · ' + escape(c.family) if c.family else ''}{' · paper candidate' if s.get('paper') else ''}[/]"]
    facts = [s.get("architecture") or "?", f"{human_count(s.get('parameters'))} params" if s.get("parameters") else "",
             f"{s.get('layers')} layers" if s.get("layers") else "", s.get("dtype") or "",
             f"licence {s['license']}" if s.get("license") else ""]
    lines.append(" · ".join(escape(str(f)) for f in facts if f) + f"  [dim](facts from {s.get('facts_from')})[/]")
    lines.append(f"Chat  {escape(str(c.chat))}  [dim]{escape(str(s.get('chat_location')))}"
                 f"{' ' + escape(s['chat_path']) if s.get('chat_path') and s['chat_path'] != c.chat.id else ''}[/]")
    if c.base is not None:
        lines.append(f"Base  {escape(str(c.base))}  [dim]{escape(str(s.get('base_location')))}[/]")
    else:
        lines.append("Base  [red]none[/]" + (f" ({escape(c.no_base_reason)})" if c.no_base_reason else ""))
    if s.get("merge_supported"):
        lines.append("[green]sparse merging supported[/]: Base (W_pre) present, same architecture, layers and "
                     "tensor shapes")
    else:
        lines.append(f"[red]{escape(s.get('merge_reason') or 'not assessed')}[/]")
    if cap is not None and cap.detail:
        lines.append("[dim]" + escape(", ".join(f"{k}: {v}" for k, v in cap.detail.items())[:300]) + "[/]")
    if cap is not None and cap.hub_check is not None and cap.hub_check.detail.get("tensor"):
        lines.append("[dim]" + escape(", ".join(f"{k}: {v}" for k, v in cap.hub_check.detail.items())[:300]) + "[/]")
    if c.unchecked:
        lines.append(f"[yellow]{escape(unchecked_note(c))}[/] (or [b]c[/b] here)")
    # "remote code: yes" is the fact (auto_map in config.json); trust is the user's opt-in, shown when given
    remote = _yn(s.get("needs_remote_code")) + (" (trusted: you opted in)" if s.get("needs_remote_code")
                                                 and s.get("trust_remote_code") else "")
    # the flags column's letters, spelled out here (the legend on screen)
    flags = [f"[b]G[/b] gated: {_yn(s.get('gated'))}", f"[b]R[/b] remote code: {remote}",
             f"[b]P[/b] paper's eight: {_yn(s.get('paper'))}", f"chat template: {_yn(s.get('chat_template'))}"]
    if s.get("local"):
        flags.append(f"on disk {human_bytes(s.get('size_bytes'))}")
    elif s.get("download_bytes"):
        flags.append(f"download {human_bytes(s['download_bytes'], approx=bool(cap and cap.download_estimated))}")
    lines.append(" · ".join(flags))
    for note in ([c.notes] if c.notes else []) + (list(cap.notes) if cap else []):
        lines.append(f"[dim]{escape(note)}[/]")
    return "\n".join(lines)


def _yn(v: Any) -> str:
    return "?" if v is None else ("yes" if v else "no")


def scan_note(rep: ScanReport) -> str:
    """`3 added; 1 already known (a, b, c)`: what a scan of the cache registered."""
    parts = [f"{len(rep.added)} added"]
    if rep.known:
        parts.append(f"{len(rep.known)} already known")
    if rep.skipped:
        parts.append(f"{len(rep.skipped)} skipped")
    added = ", ".join(c.name for c in rep.added[:5])
    return "; ".join(parts) + (f" ({added})" if added else "")


def check_note(results: list[CheckResult]) -> str:
    bad = [e for r in results for e in r.errors]
    merge = [r for r in results if r.hub_check is not None]
    ok = sum(r.hub_check.merge_supported for r in merge if r.hub_check is not None)
    return (f"{sum(r.ok for r in results)}/{len(results)} confirmed on the hub"
            + (f"; sparse merge checked on the hub for {len(merge)}: {ok} supported" if merge else "")
            + (f"; {bad[0]}" if bad else ""))
