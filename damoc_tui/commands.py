"""Command palette (ctrl+p) providers: open any run by id, jump to any candidate.

The app's fixed commands (screens, new run, help, theme) are system commands in `DamocApp.get_system_commands`.
"""
from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from damoc import facade


class RunCommands(Provider):
    """`open run 2026...`: every run directory, newest first; `candidate NAME`: focus it on the registry."""

    def _runs(self) -> list[tuple[str, str]]:
        runs = facade.run_dirs(self.app.settings)  # type: ignore[attr-defined]
        return [(rd.run_id, f"open run {rd.run_id}") for rd in reversed(runs)]

    async def discover(self) -> Hits:
        for run_id, title in self._runs()[:5]:
            yield DiscoveryHit(title, partial(self.app.open_run, run_id), help="live view of this run")  # type: ignore[attr-defined]

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for run_id, title in self._runs():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(self.app.open_run, run_id),  # type: ignore[attr-defined]
                          help="live view of this run")
        for name in self.app.known_candidates:  # type: ignore[attr-defined]
            title = f"candidate {name}"
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(self.app.show_candidate, name),  # type: ignore[attr-defined]
                          help="show it on the registry screen")
