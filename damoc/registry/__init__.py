"""The model registry: candidate Chat/Base pairs, their computed sparse-merge capability, the built-in catalog,
local discovery, hub pulls and pre-flight estimates. See docs/registry.md.

Public API (light to import: no torch, no network):
    RegistryStore(settings)  .list() .get(name) .add(candidate) .remove(name) ...
    Candidate, ModelRef, ModelFacts, Capability, ResolvedCandidate
    resolve_candidate(settings, name) -> ResolvedCandidate
    register_zoo(settings, zoo_candidates)
    new_candidate(chat, base, name=...) -> Candidate   (validated, as `registry add`; then store.add it)
    add_candidate(settings, chat, base, name=...) -> Candidate   (built, stored and assessed: `registry add`)
    preflight(settings, names, config) -> Preflight
"""
from damoc.registry.add import add_candidate
from damoc.registry.models import Candidate, Capability, ModelFacts, ModelRef, ResolvedCandidate
from damoc.registry.preflight import Preflight, PreflightConfig, preflight
from damoc.registry.resolve import new_candidate, register_zoo, resolve_candidate
from damoc.registry.store import NameTaken, RegistryBusy, RegistryCorrupt, RegistryStore

__all__ = ["Candidate", "Capability", "ModelFacts", "ModelRef", "ResolvedCandidate", "RegistryStore",
           "RegistryCorrupt", "RegistryBusy", "NameTaken", "new_candidate", "add_candidate", "resolve_candidate", "register_zoo", "preflight",
           "Preflight", "PreflightConfig"]
