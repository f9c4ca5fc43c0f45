"""Registry: every candidate with its capability flags (sparse merge, W_pre, where it lives and its size, gated,
remote code, parameters, layers), search/sort/filter, a detail pane with the reason behind each flag, and the actions
add, remove, scan the HF cache, check, pull, and select candidates for a run.

Capabilities are computed by `damoc.registry` from config.json and safetensors headers (never typed in); this screen
only shows them. Every registry call runs in a thread worker.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, ProgressBar, Static

from damoc import facade
from damoc.facade import Candidate
from damoc_tui import bridge
from damoc_tui.job_progress import JobReporter, PullProgress
from damoc_tui.messages import (CandidateAdded, CandidatePulled, CandidateRemoved, JobDone, JobProgress,
                                ModelsScanned, OnlineChecked, RegistryRead, ZooBuilt)
from damoc_tui.screens.candidate_view import (COLUMNS, FIRST_STEP, SORTS, candidate_row, check_note, detail_text,
                                              scan_note, sort_key)
from damoc_tui.screens.modals import ChoiceScreen, ConfirmScreen, FormScreen, failed
from damoc_tui.widgets.synced_table import SyncedTable
from damoc_tui.widgets.topbar import TopBar

STORE_POLL_S = 2.0          # how often the screen looks whether another process changed the registry file


class RegistryScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_select", "Select", id="registry.select"),
        Binding("slash", "search", "Search", id="registry.search"),
        Binding("m", "only_mergeable", "Merge", id="registry.mergeable"),
        Binding("l", "only_local", "Local", id="registry.local", show=False),
        Binding("o", "cycle_sort", "Sort", id="registry.sort", show=False),
        Binding("plus,insert", "add", "Add", id="registry.add"),
        Binding("delete,minus", "remove", "Remove", id="registry.remove", show=False),
        Binding("s", "scan", "Scan cache", id="registry.scan", show=False),
        Binding("c", "check", "Check", id="registry.check", show=False),
        Binding("p", "pull", "Pull", id="registry.pull", show=False),
        Binding("z", "build_zoo", "Demo zoo", id="registry.zoo", show=False),
        Binding("f", "refresh", "Refresh", id="registry.refresh"),
        Binding("j", "cursor_down", "Down", id="registry.down", show=False),
        Binding("k", "cursor_up", "Up", id="registry.up", show=False),
        Binding("escape", "clear_search", "Clear", id="registry.clear", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.candidates: list[Candidate] = []
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
        yield Static("", id="reg-hint")
        with Horizontal(id="reg-body"):
            yield SyncedTable(COLUMNS, row_key="key", id="reg-table", flex="name", flex_min=14)
            with Vertical(id="reg-side"):
                with VerticalScroll(id="reg-detail-scroll"):
                    yield Static("loading the registry…", id="reg-detail")
                yield ProgressBar(id="reg-progress", show_eta=False)
        yield Footer(compact=True, show_command_palette=False)   # ctrl+p is in the help; 80 columns hold every key

    def on_mount(self) -> None:
        self.settings = self.app.settings  # type: ignore[attr-defined]
        self.query_one("#reg-progress").display = False
        self.query_one("#reg-hint").display = False
        self.query_one("#reg-table").focus()
        self._render_mode()
        self._stamp = self._store_stamp()
        self.set_interval(STORE_POLL_S, self._watch_store)
        self.reload()

    # -- data -------------------------------------------------------------------------------------------------
    def _store_stamp(self) -> tuple[int, int] | None:
        """The registry file's (mtime, size): one stat, cheap enough for the event loop."""
        try:
            st = self.settings.registry_path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _watch_store(self) -> None:
        """Another process changed the registry (a zoo built or a model added from the CLI): read it again."""
        stamp = self._store_stamp()
        if stamp != self._stamp:
            self._stamp = stamp
            self.reload()

    @work(thread=True, group="registry-io", exclusive=True, exit_on_error=False, description="read the registry")
    def reload(self) -> None:
        bridge.run_job(RegistryRead, lambda: facade.registry_candidates(self.settings), self.post_message)

    def visible(self) -> list[Candidate]:
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
        self.query_one("#reg-hint").display = self.loaded and not self.has_local()
        self.query_one("#reg-hint", Static).update(FIRST_STEP)
        self._render_detail()
        self._render_mode()

    def has_local(self) -> bool:
        return any(c.summary().get("local") for c in self.candidates)

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

    def current(self) -> Candidate | None:
        key = self.query_one("#reg-table", SyncedTable).highlighted_key
        return next((c for c in self.candidates if c.name == key), None)

    def _render_detail(self) -> None:
        c = self.current()
        target = self.query_one("#reg-detail", Static)
        if c is None:
            target.update(("no candidate matches" + ("" if self.has_local() else f"\n{FIRST_STEP}"))
                          if self.candidates else "the registry is empty: " + FIRST_STEP.split(": ", 1)[1])
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
                self._job(CandidateAdded, lambda: facade.add_candidate(
                    self.settings, values["chat"], values.get("base") or None, name=values.get("name") or None))
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
                self._job(CandidateRemoved, lambda: facade.remove_candidate(self.settings, c.name), name=c.name)
        self.app.push_screen(ConfirmScreen(f"Remove {c.name}?", f"This will {what}; model files are not deleted.",
                                           yes="Remove", no="Keep"), answer)

    def action_scan(self) -> None:
        """Scan the Hugging Face cache, and optionally folders, for Chat/Base pairs."""
        def done(values: dict[str, str] | None) -> None:
            if values is not None:
                folders = [Path(p).expanduser() for p in values.get("paths", "").split() if p]
                self.notify("scanning…", timeout=2)
                self._job(ModelsScanned, lambda: facade.scan_models(self.settings, folders))
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
                self._job(OnlineChecked, lambda: facade.check_online(self.settings, name))
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
                self._job(CandidatePulled, lambda: facade.pull_candidate(self.settings, c.name,
                                                                         PullProgress(self.post_message)),
                          name=c.name)
        self.app.push_screen(ConfirmScreen(f"Download {c.name}?", c.merge_reason, yes="Download", no="Not now"),
                             answer)

    def action_build_zoo(self) -> None:
        """The first step: build the offline demo zoo here (cached; a thread worker, with a progress bar)."""
        size = self.settings.zoo_size
        def answer(yes: bool | None) -> None:
            if yes:
                self.notify(f"building the {size} zoo: progress below; the app stays usable", timeout=5)
                self._job(ZooBuilt, lambda: facade.build_demo_zoo(self.settings, JobReporter(self.post_message,
                                                                                              "zoo")))
        self.app.push_screen(ConfirmScreen(
            f"Build the {size} zoo?", "Tiny Chat/Base pairs of real architectures, trained on this machine (demo: "
            "about 7 minutes on 2 CPU cores, once; cached) and registered, ready to run.", yes="Build",
            no="Not now"), answer)

    def on_zoo_built(self, message: ZooBuilt) -> None:
        if not self._failed(message) and message.result is not None:
            self._changed(f"demo zoo ready: {len(message.result)} candidates registered (n: new run)")

    @work(thread=True, group="registry-actions", exit_on_error=False)
    def _job(self, done: Callable[..., JobDone[Any]], work: Callable[[], Any], **context: Any) -> None:
        bridge.run_job(done, work, self.post_message, **context)

    def on_job_progress(self, message: JobProgress) -> None:
        bar = self.query_one("#reg-progress", ProgressBar)
        bar.display = True
        bar.update(total=message.total, progress=message.done)
        if message.note:
            self.query_one("#reg-mode", Static).update(f"{message.job}: {escape(message.note)[:60]}")

    def on_registry_read(self, message: RegistryRead) -> None:
        self.query_one("#reg-progress").display = False
        if message.error:
            self.query_one("#reg-detail", Static).update(f"[red]{escape(message.error)}[/]\n{escape(message.hint)}")
        if self._failed(message):
            return
        self.candidates = list(message.result or [])
        self.app.known_candidates = [c.name for c in self.candidates]  # type: ignore[attr-defined]
        self.app.registry_snapshot = self.candidates  # type: ignore[attr-defined]  # the wizard starts from it
        self.loaded = True
        self._render_table()

    def on_candidate_added(self, message: CandidateAdded) -> None:
        if not self._failed(message) and (c := message.result) is not None:
            self._changed(f"added {c.name}: " + ("sparse merging supported" if c.merge_supported
                                                 else c.merge_reason))
            if c.unchecked:
                self.notify(facade.unchecked_note(c), severity="warning", timeout=10)

    def on_candidate_removed(self, message: CandidateRemoved) -> None:
        if self._failed(message):
            return
        selected: list[str] = self.app.selected_candidates  # type: ignore[attr-defined]
        if message.name in selected:
            selected.remove(message.name)
        self._changed(f"{message.name}: {message.result}")

    def on_models_scanned(self, message: ModelsScanned) -> None:
        if not self._failed(message) and message.result is not None:
            self._changed(f"scan: {scan_note(message.result)}")

    def on_online_checked(self, message: OnlineChecked) -> None:
        if not self._failed(message) and message.result is not None:
            self._changed(f"checked: {check_note(message.result)}")

    def on_candidate_pulled(self, message: CandidatePulled) -> None:
        if not self._failed(message) and message.result is not None:
            paths = ", ".join(f"{role} in {p}" for role, p in message.result.items())
            self._changed(f"pulled {message.name}: {paths}")

    def _failed(self, message: JobDone[Any]) -> bool:
        self.query_one("#reg-progress").display = False
        if failed(self, message):
            self._render_mode()
            return True
        return False

    def _changed(self, note: str) -> None:
        """A registry action worked: say what it did and read the registry again."""
        self.notify(note, timeout=5)
        self.reload()
