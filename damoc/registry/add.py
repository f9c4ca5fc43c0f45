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
