"""Registry: every candidate with its capability flags (sparse merge, W_pre, where it lives and its size, gated,
remote code, parameters, layers), search/sort/filter, a detail pane with the reason behind each flag, and the actions
add, remove, scan the HF cache, check, pull, and select candidates for a run.

Capabilities are computed by `damoc.registry` from config.json and safetensors headers (never typed in); this screen
only shows them. Every registry call runs in a thread worker.
"""
from __future__ import annotations

from typing import Any, ClassVar

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, ProgressBar, Static

from damoc_tui import bridge, services
from damoc_tui.messages import JobDone, JobProgress
from damoc_tui.screens.modals import ChoiceScreen, ConfirmScreen, FormScreen, notify_error
from damoc_tui.widgets.synced_table import SyncedTable
from damoc_tui.widgets.topbar import TopBar

COLUMNS = [("sel", "", 1), ("name", "name", 22), ("merge", "merge", 8), ("wpre", "W_pre", 5),
           ("where", "where", 11), ("params", "params", 6), ("layers", "layers", 6), ("flags", "flags", 5)]
SORTS = ("local first", "name", "parameters", "layers", "mergeable first")
SOURCE_ORDER = {"zoo": 0, "user": 1, "scan": 2, "catalog": 3}
MERGE_LABEL = {"supported": ("yes", "green"), "no_base": ("no Base", "red"), "base_incompatible": ("incompat", "red"),
               "not_local": ("download", "yellow"), "unreadable": ("unreadable", "red")}
WHERE_LABEL = {"zoo": "zoo", "folder": "folder", "hf-cache": "cache", "hf-cache-partial": "partial", "hub": "hub",
               "missing": "missing"}


def candidate_row(c: Any, selected: bool) -> dict[str, Any]:
    """One table row from a registry Candidate (its `summary()` is the registry's stable flat view)."""
    from damoc.registry.models import human_bytes, human_count

    s = c.summary()
    cap = c.capability
    state = s.get("state") or ""
    label, style = MERGE_LABEL.get(state, (state or "?", ""))
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
    flags = ("G" if s.get("gated") else "") + ("R" if s.get("trust_remote_code") else "") + (
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


def sort_key(mode: str, c: Any) -> tuple[Any, ...]:
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


def detail_text(c: Any) -> str:
    """The reasons behind each flag, for the detail pane."""
    from damoc.registry.models import human_bytes, human_count

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
    flags = [f"gated: {_yn(s.get('gated'))}", f"remote code: {_yn(s.get('trust_remote_code'))}",
             f"chat template: {_yn(s.get('chat_template'))}"]
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


class RegistryScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_select", "Select", id="registry.select"),
        Binding("slash", "search", "Search", id="registry.search"),
        Binding("m", "only_mergeable", "Mergeable", id="registry.mergeable"),
        Binding("l", "only_local", "Local", id="registry.local", show=False),
        Binding("o", "cycle_sort", "Sort", id="registry.sort"),
        Binding("plus,insert", "add", "Add", id="registry.add"),
        Binding("delete,minus", "remove", "Remove", id="registry.remove", show=False),
        Binding("s", "scan", "Scan cache", id="registry.scan", show=False),
        Binding("c", "check", "Check", id="registry.check", show=False),
        Binding("p", "pull", "Pull", id="registry.pull", show=False),
        Binding("f", "refresh", "Refresh", id="registry.refresh", show=False),
        Binding("j", "cursor_down", "Down", id="registry.down", show=False),
        Binding("k", "cursor_up", "Up", id="registry.up", show=False),
        Binding("escape", "clear_search", "Clear", id="registry.clear", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.candidates: list[Any] = []
        self.only_mergeable = False
        self.only_local = False
        self.sort_mode = SORTS[0]
        self.query_text = ""
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield TopBar("registry")
        with Horizontal(id="reg-filter"):
            yield Input(placeholder="/ search name, family, architecture", id="reg-search", compact=True)
            yield Static("", id="reg-mode")
        with Horizontal(id="reg-body"):
            yield SyncedTable(COLUMNS, row_key="key", id="reg-table")
            with Vertical(id="reg-side"):
                with VerticalScroll(id="reg-detail-scroll"):
                    yield Static("loading the registry…", id="reg-detail")
                yield ProgressBar(id="reg-progress", show_eta=False)
        yield Footer()

    def on_mount(self) -> None:
        self.settings = self.app.settings  # type: ignore[attr-defined]
        self.query_one("#reg-progress").display = False
        self.query_one("#reg-table").focus()
        self._render_mode()
        self.reload()

    # -- data -------------------------------------------------------------------------------------------------
    @work(thread=True, group="registry-io", exclusive=True, exit_on_error=False, description="read the registry")
    def reload(self) -> None:
        bridge.run_job("list", lambda: services.registry_list(self.settings), self.post_message)

    def visible(self) -> list[Any]:
        q = self.query_text.lower()
        out = []
        for c in self.candidates:
            s = c.summary()
            if self.only_mergeable and not s.get("merge_supported"):
                continue
            if self.only_local and not s.get("local"):
                continue
            if q and not any(q in str(v).lower() for v in (c.name, c.family, s.get("architecture"), c.chat.id,
                                                             c.base.id if c.base else "")):
                continue
            out.append(c)
        return sorted(out, key=lambda c: sort_key(self.sort_mode, c))

    def _render_table(self) -> None:
        selected = set(self.app.selected_candidates)  # type: ignore[attr-defined]
        rows = [candidate_row(c, c.name in selected) for c in self.visible()]
        self.query_one("#reg-table", SyncedTable).sync(rows)
        self._render_detail()
        self._render_mode()

    def _render_mode(self) -> None:
        sel = self.app.selected_candidates  # type: ignore[attr-defined]
        parts = [f"sort: {self.sort_mode}"]
        if self.only_mergeable:
            parts.append("only mergeable")
        if self.only_local:
            parts.append("only local")
        if sel:
            parts.append(f"{len(sel)} selected (n: new run)")
        self.query_one("#reg-mode", Static).update(" · ".join(parts))

    def current(self) -> Any | None:
        key = self.query_one("#reg-table", SyncedTable).highlighted_key
        return next((c for c in self.candidates if c.name == key), None)

    def _render_detail(self) -> None:
        c = self.current()
        target = self.query_one("#reg-detail", Static)
        if c is None:
            target.update("no candidate matches" if self.candidates else "the registry is empty: + adds one, "
                          "s scans the Hugging Face cache, `damoc zoo build` registers the demo zoo")
        else:
            target.update(detail_text(c))

    @on(DataTable.RowHighlighted, "#reg-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._render_detail()

    @on(DataTable.RowSelected, "#reg-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_toggle_select()

    @on(Input.Changed, "#reg-search")
    def _search(self, event: Input.Changed) -> None:
        self.query_text = event.value.strip()
        self._render_table()

    @on(Input.Submitted, "#reg-search")
    def _search_done(self, event: Input.Submitted) -> None:
        self.query_one("#reg-table").focus()

    def show(self, name: str) -> None:
        """Put the cursor on `name` (command palette), clearing filters that hide it."""
        self.only_mergeable = self.only_local = False
        self.query_text = ""
        self.query_one("#reg-search", Input).value = ""
        self._render_table()
        table = self.query_one("#reg-table", SyncedTable)
        if name in table.row_keys:
            table.move_cursor(row=table.row_keys.index(name))
            table.focus()

    # -- actions ------------------------------------------------------------------------------------------------
    def action_cursor_down(self) -> None:
        self.query_one("#reg-table", SyncedTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one("#reg-table", SyncedTable).action_cursor_up()

    def action_search(self) -> None:
        self.query_one("#reg-search", Input).focus()

    def action_clear_search(self) -> None:
        if self.query_text:
            self.query_one("#reg-search", Input).value = ""
        self.query_one("#reg-table").focus()

    def action_only_mergeable(self) -> None:
        self.only_mergeable = not self.only_mergeable
        self._render_table()

    def action_only_local(self) -> None:
        self.only_local = not self.only_local
        self._render_table()

    def action_cycle_sort(self) -> None:
        self.sort_mode = SORTS[(SORTS.index(self.sort_mode) + 1) % len(SORTS)]
        self._render_table()

    def action_toggle_select(self) -> None:
        c = self.current()
        if c is None:
            return
        sel: list[str] = self.app.selected_candidates  # type: ignore[attr-defined]
        if c.name in sel:
            sel.remove(c.name)
        else:
            if not c.summary().get("local"):
                self.notify(f"{c.name} is not on this machine: p pulls it first ({c.merge_reason})",
                            severity="warning", timeout=6)
            sel.append(c.name)
        self._render_table()

    def action_refresh(self) -> None:
        self.reload()

    def action_add(self) -> None:
        fields = [("chat", "Chat (or instruct) model: folder or hub id", "e.g. /models/qwen-chat or Qwen/Qwen2.5-0.5B-Instruct"),
                  ("base", "Base model (W_pre), optional", "folder or hub id; empty = no Base"),
                  ("name", "Name, optional", "derived from the Chat when empty")]

        def done(values: dict[str, str] | None) -> None:
            if values and values.get("chat"):
                self._job("add", lambda: add_candidate(self.settings, values["chat"], values.get("base") or None,
                                                       values.get("name") or None))
            elif values is not None:
                self.notify("a Chat model is required", severity="warning")
        self.app.push_screen(FormScreen("Add a candidate", fields,
                                        note="Capabilities are computed from config.json and safetensors headers; "
                                             "nothing is downloaded."), done)

    def action_remove(self) -> None:
        c = self.current()
        if c is None:
            return
        what = "hide this built-in catalog entry" if c.source == "catalog" else "remove it from the registry"
        def answer(yes: bool | None) -> None:
            if yes:
                self._job("remove", lambda: services.registry().RegistryStore(self.settings).remove(c.name),
                          name=c.name)
        self.app.push_screen(ConfirmScreen(f"Remove {c.name}?", f"This will {what}; model files are not deleted.",
                                           yes="Remove", no="Keep"), answer)

    def action_scan(self) -> None:
        """Scan the Hugging Face cache, and optionally folders, for Chat/Base pairs."""
        def done(values: dict[str, str] | None) -> None:
            if values is not None:
                folders = [p for p in values.get("paths", "").split() if p]
                self.notify("scanning…", timeout=2)
                self._job("scan", lambda: scan_cache(self.settings, folders))
        self.app.push_screen(FormScreen("Scan for models", [("paths", "Folders to scan as well (space-separated, "
                                                                      "optional)", "e.g. /data/models")],
                                        note="The Hugging Face cache is always scanned; new pairs are registered."),
                             done)

    def action_check(self) -> None:
        """Recompute capabilities from local files, or confirm catalog facts on the hub."""
        c = self.current()
        name = c.name if c is not None else None

        def chosen(what: str | None) -> None:
            if what == "local":
                self.notify("rechecking local files…", timeout=2)
                self.reload()
            elif what == "online":
                self._job("check", lambda: check_online(self.settings, name), name=name)
        self.app.push_screen(ChoiceScreen(f"Check {name or 'all'}", [
            ("local", "recompute capabilities from the files on this machine"),
            ("online", f"confirm gated/size/licence of {name or 'every candidate'} on the hub (network)")]), chosen)

    def action_pull(self) -> None:
        c = self.current()
        if c is None:
            return
        if c.summary().get("local") and (c.base is None or (c.capability and c.capability.base_path)):
            self.notify(f"{c.name} is already on this machine", timeout=3)
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self._job("pull", lambda: pull_candidate(self.settings, c.name, self.post_message), name=c.name)
        self.app.push_screen(ConfirmScreen(f"Download {c.name}?", c.merge_reason, yes="Download", no="Not now"),
                             answer)

    @work(thread=True, group="registry-actions", exit_on_error=False)
    def _job(self, job: str, fn: Any, **extra: Any) -> None:
        bridge.run_job(job, fn, self.post_message, **extra)

    def on_job_progress(self, message: JobProgress) -> None:
        bar = self.query_one("#reg-progress", ProgressBar)
        bar.display = True
        bar.update(total=message.total, progress=message.done)
        if message.note:
            self.query_one("#reg-mode", Static).update(f"{message.job}: {escape(message.note)[:60]}")

    def on_job_done(self, message: JobDone) -> None:
        self.query_one("#reg-progress").display = False
        if message.error:
            if message.job == "list":
                self.query_one("#reg-detail", Static).update(f"[red]{escape(message.error)}[/]\n{escape(message.hint)}")
            notify_error(self.app, message.error, message.hint, title=message.job)
            self._render_mode()
            return
        if message.job == "list":
            self.candidates = list(message.result or [])
            self.app.known_candidates = [c.name for c in self.candidates]  # type: ignore[attr-defined]
            self.app.registry_snapshot = self.candidates  # type: ignore[attr-defined]  # the wizard starts from it
            self.loaded = True
            self._render_table()
            return
        note = {"add": lambda r: f"added {r.name}: " + ("sparse merging supported" if r.merge_supported
                                                         else r.merge_reason),
                "remove": lambda r: f"{message.extra.get('name')}: {r}",
                "scan": lambda r: f"scan: {r}", "check": lambda r: f"checked: {r}",
                "pull": lambda r: f"pulled {message.extra.get('name')}: {r}"}.get(message.job, lambda r: f"{message.job} done")
        self.notify(note(message.result), timeout=5)
        if message.job == "remove" and message.extra.get("name") in self.app.selected_candidates:  # type: ignore[attr-defined]
            self.app.selected_candidates.remove(message.extra["name"])  # type: ignore[attr-defined]
        self.reload()


# -- registry operations (run in thread workers) --------------------------------------------------------------

def add_candidate(settings: Any, chat: str, base: str | None, name: str | None) -> Any:
    """Register a Chat (+ Base) exactly as `damoc registry add` does (the library builds and checks the entry)."""
    from damoc.registry import new_candidate
    from damoc.registry.assess import assess
    from damoc.registry.store import RegistryStore

    store = RegistryStore(settings)
    cand = new_candidate(chat, base, name=name or None)
    store.add(cand)
    return assess(cand, store.hub_facts())


def scan_cache(settings: Any, paths: list[str] | None = None) -> str:
    from pathlib import Path

    from damoc.registry.scan import scan
    from damoc.registry.store import RegistryStore

    rep = scan(RegistryStore(settings), [Path(p).expanduser() for p in (paths or [])], hf_cache=True)
    parts = [f"{len(rep.added)} added"]
    if rep.known:
        parts.append(f"{len(rep.known)} already known")
    if rep.skipped:
        parts.append(f"{len(rep.skipped)} skipped")
    added = ", ".join(c.name for c in rep.added[:5])
    return "; ".join(parts) + (f" ({added})" if added else "")


def check_online(settings: Any, name: str | None) -> str:
    from damoc.registry.hub import check_online as online
    from damoc.registry.store import RegistryStore

    store = RegistryStore(settings)
    cands = [store.get(name)] if name else store.list()
    res = online(store, cands)
    bad = [e for r in res for e in r.errors]
    return f"{sum(r.ok for r in res)}/{len(res)} confirmed on the hub" + (f"; {bad[0]}" if bad else "")


class _PostProgress:
    """A damoc Reporter that turns the pull's stage events into JobProgress messages (thread-safe posts)."""

    def __init__(self, post: Any, job: str) -> None:
        self.post, self.job = post, job

    def emit(self, event: Any) -> None:
        from damoc.events import StageProgress, StageStarted

        if isinstance(event, (StageStarted, StageProgress)):
            from damoc.registry.models import human_bytes

            done = getattr(event, "done", 0)
            note = f"{event.stage} {human_bytes(done)}" + (f" / {human_bytes(event.total)}" if event.total else "")
            note += f" {event.note}" if getattr(event, "note", "") else ""
            self.post(JobProgress(self.job, done, event.total, note))


def pull_candidate(settings: Any, name: str, post: Any) -> str:
    from damoc.registry.hub import pull

    paths = pull(settings, name, reporter=_PostProgress(post, "pull"))
    return ", ".join(f"{role} in {p}" for role, p in paths.items())
