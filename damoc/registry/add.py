"""Register a candidate: the one composition behind `damoc registry add` and the app's add dialog."""
from __future__ import annotations

from damoc.registry.assess import assess
from damoc.registry.models import Candidate
from damoc.registry.resolve import new_candidate
from damoc.registry.store import RegistryStore
from damoc.settings import Settings


def add_candidate(settings: Settings, chat: str, base: str | None = None, *, name: str | None = None,
                  family: str | None = None, chat_revision: str | None = None, base_revision: str | None = None,
                  notes: str = "", replace: bool = False, trust_remote_code: bool = False) -> Candidate:
    """Build the entry from its files (`new_candidate`: nothing is downloaded), store it (a name already used
    raises NameTaken unless `replace`), and return it with its capability computed. `trust_remote_code` is the
    user's explicit opt-in to run the model's own code (auto_map); a folder that needs it is never trusted
    without."""
    store = RegistryStore(settings)
    cand = new_candidate(chat, base, name=name, family=family, chat_revision=chat_revision,
                         base_revision=base_revision, notes=notes, trust_remote_code=trust_remote_code)
    store.add(cand, replace=replace)
    return assess(cand, store.hub_facts())


def unchecked_note(c: Candidate) -> str:
    """What to say about an entry whose hub ids nothing has confirmed (`Candidate.unchecked`): adding never asks
    the hub, so an id with a typo is only found by checking it."""
    from damoc.registry.hub import offline_reason

    off = offline_reason()
    ids = ", ".join(c.unchecked)
    head = f"offline ({off}): {ids} could not be checked on the hub" if off else \
        f"{ids} not checked on the hub yet (adding never asks it)"
    return f"{head}; a typo in an id shows only when checked: damoc registry check --online {c.name}"
