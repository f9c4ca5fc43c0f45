"""The hub, only when asked: `registry check --online` (facts through the hub API) and `registry pull` (download
with progress and resume). Nothing here runs implicitly.

Offline mode (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE) is decided once, up front, and gives a message at once; every
network call has a timeout. Gated repositories raise `GatedRepoError`, a subclass of `RepositoryNotFoundError`, so
it is tested first or a gated model would be reported as "not found" (landscape.md 5.6).
"""
from __future__ import annotations

import fnmatch
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from damoc.errors import DamocError
from damoc.events import Reporter, StageTracker
from damoc.registry.capability import WeightIndex
from damoc.registry.models import Candidate, Capability, HubCheck, ModelFacts, ModelRef, human_bytes
from damoc.settings import Settings

if TYPE_CHECKING:
    from damoc.registry.store import RegistryStore

DEFAULT_TIMEOUT = 15.0
# what a model needs to load: config, tokenizer, weights, remote code. Not: original/ checkpoints, GGUF, ONNX, TF, Flax
KEEP = ("*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "*.py", "README.md", "LICENSE*")
SKIP_WHEN_SAFETENSORS = ("*.bin", "*.pt", "*.pth", "*.h5", "*.msgpack", "*.ckpt")


class HubError(DamocError):
    """The hub could not be used (offline, timeout, gated, not found...)."""


def offline_reason() -> str | None:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{var}={os.environ[var]} is set"
    return None


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _has_token() -> bool:
    if os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"):
        return True
    try:
        from huggingface_hub import get_token

        return bool(get_token())
    except Exception:
        return False


def _offline_error(what: str) -> HubError:
    why = offline_reason() or "HF_HUB_OFFLINE was set when huggingface_hub was imported"
    return HubError(f"cannot {what}: offline mode ({why})",
                    "unset HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE) on a machine with network; or copy the model "
                    "folder here and register it: damoc registry add --chat FOLDER [--base FOLDER]")


def explain(e: BaseException, repo_id: str, what: str, timeout: float) -> HubError:
    """One line + next step for anything the hub client raised."""
    from huggingface_hub import errors as E

    page = f"{endpoint()}/{repo_id}"
    if isinstance(e, E.GatedRepoError):
        if _has_token():
            return HubError(f"{repo_id} is gated and your token has no access to it yet",
                            f"accept the licence at {page} (access can take a while to be granted), and check "
                            "`hf auth whoami` names the account that accepted it")
        return HubError(f"{repo_id} is gated: its licence must be accepted and you must be logged in",
                        f"accept the licence at {page}, then log in: `hf auth login` or export HF_TOKEN=hf_...")
    if isinstance(e, E.RevisionNotFoundError):
        return HubError(f"{repo_id}: revision not found on the hub", f"check the revision at {page}/tree/main")
    if isinstance(e, E.RepositoryNotFoundError):
        hint = "check the id for typos" + ("" if _has_token() else "; private repos need `hf auth login`")
        return HubError(f"{repo_id} not found on the hub", hint)
    if isinstance(e, E.OfflineModeIsEnabled):
        return _offline_error(what)
    if isinstance(e, E.HfHubHTTPError):
        code = getattr(getattr(e, "response", None), "status_code", None)
        if code == 401:
            return HubError(f"{repo_id}: the hub rejected the token (401)", "log in again: `hf auth login`")
        if code == 429:
            return HubError(f"{repo_id}: rate-limited by the hub (429)", "wait a few minutes and retry")
        return HubError(f"{repo_id}: the hub answered HTTP {code}", "retry later; `damoc registry pull` resumes")
    # huggingface_hub's HTTP client (httpx, or httpx2 in hub 2.x) is matched by class names, not imported
    mro = {k.__name__ for k in type(e).__mro__}
    if mro & {"TimeoutException", "TimeoutError", "ReadTimeout", "ConnectTimeout", "Timeout"}:
        return HubError(f"no answer from {endpoint()} (timeout {timeout:g} s) while trying to {what}",
                        "check the network or proxy (HTTPS_PROXY); without network, set HF_HUB_OFFLINE=1 and copy "
                        "the model folder here")
    if mro & {"TransportError", "ConnectError", "NetworkError", "ConnectionError", "OSError"}:
        return HubError(f"cannot reach {endpoint()} to {what} ({type(e).__name__}: {e})",
                        "check the network or proxy (HTTPS_PROXY); without network, set HF_HUB_OFFLINE=1 and copy "
                        "the model folder here")
    return HubError(f"{repo_id}: {type(e).__name__}: {e}", "retry; if it persists, report it")


def select_files(names: list[str]) -> list[str]:
    """Top-level files a model needs (config, tokenizer, weights, remote code)."""
    top = [n for n in names if "/" not in n]
    keep = [n for n in top if any(fnmatch.fnmatch(n, p) for p in KEEP)]
    has_hf_shards = any(n.endswith(".safetensors") and not n.startswith("consolidated") for n in keep)
    if has_hf_shards:
        keep = [n for n in keep if not n.startswith("consolidated")]
    else:
        keep += [n for n in top if fnmatch.fnmatch(n, "pytorch_model*.bin")]
    if any(n.endswith(".safetensors") for n in keep):
        keep = [n for n in keep if not any(fnmatch.fnmatch(n, p) for p in SKIP_WHEN_SAFETENSORS)]
    return sorted(set(keep))


@dataclass
class RemoteModel:
    repo_id: str
    sha: str | None
    files: dict[str, int | None]              # selected file -> size
    facts: ModelFacts


def remote_model(ref: ModelRef, timeout: float = DEFAULT_TIMEOUT) -> RemoteModel:
    """Hub API facts for one repo: gated, licence, parameter count, file sizes (no file is downloaded)."""
    if offline_reason():
        raise _offline_error(f"query the hub for {ref.id}")
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=endpoint()).model_info(ref.id, revision=ref.revision, timeout=timeout,
                                                     files_metadata=True)
    except Exception as e:  # noqa: BLE001 - every failure becomes a one-line reason
        raise explain(e, ref.id, f"query the hub for {ref.id}", timeout) from e
    sizes = {s.rfilename: getattr(s, "size", None) for s in (info.siblings or [])}
    files = {n: sizes[n] for n in select_files(list(sizes))}
    cfg = info.config or {}
    card = getattr(info, "card_data", None) or getattr(info, "cardData", None)
    lic = getattr(card, "license", None) if card is not None and not isinstance(card, dict) else \
        (card or {}).get("license")
    st = getattr(info, "safetensors", None)
    total = sum(v for v in files.values() if v) or None
    facts = ModelFacts(
        architecture=cfg.get("model_type"), architectures=list(cfg.get("architectures") or []),
        parameters=getattr(st, "total", None) if st else None, license=lic,
        gated=bool(info.gated) if info.gated is not None else None,
        needs_remote_code=bool(cfg.get("auto_map")) if cfg else None,
        chat_template=bool((cfg.get("tokenizer_config") or {}).get("chat_template")) if cfg else None,
        size_bytes=total, size_estimated=False, origin="hub",
    )
    return RemoteModel(ref.id, info.sha, files, facts)


@dataclass
class CheckResult:
    name: str
    ok: bool
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    hub_check: HubCheck | None = None        # the pair's sparse-merge capability computed on the hub


# -- headers through range requests (no weights) -------------------------------------------------------------------

def _hub_get(ref: ModelRef, filename: str, timeout: float) -> bytes:
    """One small file of a hub repo (config.json, the safetensors index), read into memory: never written to the
    Hugging Face cache, so a checked pair does not look partly downloaded."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    url = hf_hub_url(ref.id, filename, revision=ref.revision, endpoint=endpoint())
    try:
        r = get_session().get(url, headers=build_hf_headers(), timeout=timeout, follow_redirects=True)
        hf_raise_for_status(r)
    except Exception as e:  # noqa: BLE001
        raise explain(e, ref.id, f"read {filename} of {ref.id}", timeout) from e
    return r.content


def remote_headers(ref: ModelRef, files: list[str], timeout: float = DEFAULT_TIMEOUT
                   ) -> tuple[dict[str, Any], WeightIndex]:
    """config.json and the tensor names, dtypes and shapes of a hub model, from the safetensors headers read with
    range requests (`HfApi.parse_safetensors_file_metadata`: the first 100 kB of each shard, rarely a second
    request); `files` is the repo's file list (`remote_model`)."""
    import json

    from huggingface_hub import HfApi

    from damoc.registry.capability import UnreadableModel

    try:
        cfg = json.loads(_hub_get(ref, "config.json", timeout))
    except ValueError as e:
        raise HubError(f"{ref.id}: config.json on the hub is not valid JSON ({e})", "check the repo's files") from e
    if not isinstance(cfg, dict):
        raise HubError(f"{ref.id}: config.json on the hub is not a JSON object", "check the repo's files")
    if "model.safetensors.index.json" in files:
        try:
            shards = sorted(set(json.loads(_hub_get(ref, "model.safetensors.index.json", timeout))["weight_map"]
                                .values()))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise HubError(f"{ref.id}: model.safetensors.index.json is not a valid index ({e})",
                           "check the repo's files") from e
    else:
        shards = [f for f in files if f.endswith(".safetensors") and not f.startswith("consolidated")]
    if not shards:
        return cfg, WeightIndex("bin" if any(f.endswith(".bin") for f in files) else "none")
    api = HfApi(endpoint=endpoint())
    wi = WeightIndex("safetensors")
    for shard in shards:
        try:
            md = api.parse_safetensors_file_metadata(ref.id, shard, revision=ref.revision, timeout=timeout)
        except Exception as e:  # noqa: BLE001
            if type(e).__name__ == "SafetensorsParsingError":
                raise UnreadableModel(f"{ref.id}/{shard}: unreadable safetensors header on the hub ({e})",
                                      "the repo's file is broken; try another revision") from e
            raise explain(e, ref.id, f"read the safetensors header of {ref.id}/{shard}", timeout) from e
        for name, t in md.tensors.items():
            wi.tensors[name] = (str(t.dtype), tuple(int(d) for d in t.shape))
    return cfg, wi


def hub_capability(c: Candidate, remote: dict[str, RemoteModel], timeout: float = DEFAULT_TIMEOUT
                   ) -> tuple[HubCheck, dict[str, ModelFacts]]:
    """The sparse-merge capability of a pair whose Chat or Base is not on this machine, computed from the hub by the
    rule used for local files; a side that is local is read from its folder. Returns the check and the facts its
    config.json and headers gave (hub id -> facts: layers, hidden size, parameters for the pre-flight)."""
    from damoc.registry.assess import locate
    from damoc.registry.capability import (UnreadableModel, compare_headers, config_facts, read_config,
                                           weight_index)

    assert c.base is not None
    sides, facts = [], {}
    try:
        for role, ref in (("chat", c.chat), ("base", c.base)):
            _, path, _ = locate(ref)
            if path is not None:
                sides.append((read_config(Path(path)), weight_index(Path(path))))
                continue
            if role not in remote:
                raise HubError(f"{role} {ref.id} is neither on this machine nor a hub id", "restore the folder")
            cfg, wi = remote_headers(ref, list(remote[role].files), timeout)
            f = config_facts(cfg, wi).merged_over(remote[role].facts)
            f.origin, f.size_bytes, f.size_estimated = "hub", remote[role].facts.size_bytes, False
            facts[ref.id] = f
            sides.append((cfg, wi))
        cap = compare_headers(sides[0][0], sides[1][0], sides[0][1], sides[1][1])
    except UnreadableModel as e:
        cap = Capability("unreadable", False, f"pruning skipped: {e.message}", detail={"error": e.message})
    import time

    return HubCheck(str(c.chat), str(c.base), cap.state, cap.merge_supported, cap.merge_reason, cap.detail,
                    cap.notes, time.time()), facts


def check_online(store: RegistryStore, candidates: list[Candidate], timeout: float = DEFAULT_TIMEOUT) -> list[CheckResult]:
    """Confirm gated/size/licence facts of the hub refs of `candidates`, compute the sparse-merge capability of each
    pair that is not all on this machine from the hub's config.json files and safetensors headers, and keep both
    in the store."""
    if offline_reason():
        raise _offline_error("check the hub")
    results, confirmed, checks = [], {}, []

    def keep() -> None:
        store.set_hub_facts(confirmed)
        store.set_hub_checks(checks)

    for c in candidates:
        r = CheckResult(c.name, True)
        remote: dict[str, RemoteModel] = {}
        for role, ref in (("chat", c.chat), ("base", c.base)):
            if ref is None or ref.kind != "hub":
                continue
            try:
                rm = remote_model(ref, timeout)
            except HubError as e:
                r.ok = False
                r.errors.append(f"{role} {ref.id}: {e.message}" + (f" ({e.hint})" if e.hint else ""))
                if e.message.startswith(("no answer from", "cannot reach")):
                    keep()                  # keep what was confirmed, then stop: the network is down
                    results.append(r)
                    raise
                continue
            remote[role] = rm
            confirmed[ref.id] = rm.facts
            r.facts[role] = rm.facts.to_dict()
        local_pair = c.capability is not None and c.capability.state != "not_local"
        if c.base is not None and remote and r.ok and not local_pair:
            try:
                r.hub_check, facts = hub_capability(c, remote, timeout)
            except HubError as e:
                r.ok = False
                r.errors.append(f"sparse-merge check: {e.message}" + (f" ({e.hint})" if e.hint else ""))
                if e.message.startswith(("no answer from", "cannot reach")):
                    keep()
                    results.append(r)
                    raise
            else:
                checks.append(r.hub_check)
                confirmed.update(facts)
                r.facts.update({role: facts[ref.id].to_dict() for role, ref in (("chat", c.chat), ("base", c.base))
                                if ref is not None and ref.id in facts})
        results.append(r)
    keep()
    return results


# -- pull -------------------------------------------------------------------------------------------------------------

def _progress_class(tracker: StageTracker) -> type:
    """A tqdm class for hf_hub_download that forwards byte counts to the stage tracker (and draws nothing)."""
    from tqdm.auto import tqdm

    class Forward(tqdm):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            initial = int(kwargs.get("initial") or 0)
            super().__init__(*args, **kwargs)
            if initial:                       # bytes of a resumed partial file (clients that resume byte-wise)
                tracker.advance(initial, note="resumed")

        def update(self, n: float | None = 1) -> bool | None:
            if n:
                tracker.advance(int(n))
            return super().update(n)

    return Forward


def pull(settings: Settings, name: str, *, which: str = "both", timeout: float = DEFAULT_TIMEOUT,
         reporter: Reporter | None = None) -> dict[str, str]:
    """Download the Chat and/or Base of `name` into the Hugging Face cache with progress. An interrupted pull
    resumes file by file: files already in the cache are not fetched again (huggingface_hub >= 1 downloads each file
    to a process-unique temporary file, so the file in flight restarts). Returns role -> local snapshot folder."""
    from damoc.registry.hfcache import cached_snapshot, hf_cache_dir
    from damoc.registry.store import RegistryStore

    c = RegistryStore(settings).find(name)
    roles = [("chat", c.chat)] if which in ("both", "chat") else []
    if which in ("both", "base"):
        if c.base is None:
            if which == "base":
                raise DamocError(f"{c.name} has no Base to pull" + (f" ({c.no_base_reason})" if c.no_base_reason
                                                                     else ""), "pull the Chat: drop --base-only")
        else:
            roles.append(("base", c.base))
    out: dict[str, str] = {}
    todo = []
    for role, ref in roles:
        if ref.kind == "folder":
            out[role] = ref.id
            continue
        snap = cached_snapshot(ref.id, ref.revision)
        if snap is not None and snap.complete:
            out[role] = str(snap.path)
            continue
        todo.append((role, ref))
    if not todo:
        return out
    if offline_reason():
        raise _offline_error(f"download {', '.join(r.id for _, r in todo)}")
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cache = hf_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    plans = []
    for role, ref in todo:
        rm = remote_model(ref, timeout)
        missing = {f: s for f, s in rm.files.items()
                   if not isinstance(try_to_load_from_cache(ref.id, f, cache_dir=str(cache), revision=ref.revision),
                                     str)}
        plans.append((role, ref, rm, missing))
    need = sum(s or 0 for *_, missing in plans for s in missing.values())
    free = shutil.disk_usage(cache).free
    if need > free:
        raise DamocError(f"{c.name}: the download needs {human_bytes(need)} but {cache} has {human_bytes(free)} free",
                         "free some space (`hf cache ls` / `hf cache rm`), or point HF_HUB_CACHE at a bigger disk")
    for role, ref, rm, missing in plans:
        tracker = StageTracker(reporter, f"pull-{role}", candidate=c.name)
        tracker.start(total=sum(s or 0 for s in missing.values()) or None)
        try:
            for fname in sorted(missing, key=lambda f: (f.endswith(".safetensors"), f)):
                tracker.progress(tracker.done, note=fname)
                hf_hub_download(ref.id, fname, revision=ref.revision, cache_dir=str(cache), endpoint=endpoint(),
                                etag_timeout=timeout, tqdm_class=_progress_class(tracker))
        except KeyboardInterrupt:
            tracker.finish("cancelled", "interrupted: run the same pull again to resume")
            raise
        except Exception as e:  # noqa: BLE001
            err = e if isinstance(e, DamocError) else explain(e, ref.id, f"download {ref.id}", timeout)
            tracker.finish("failed", err.message)
            raise err from e
        snap = cached_snapshot(ref.id, ref.revision, cache)
        if snap is None or not snap.complete:
            tracker.finish("failed", "download finished but the snapshot is incomplete")
            raise DamocError(f"{ref.id}: downloaded files do not form a complete model in {cache}",
                             f"run `damoc registry pull {c.name}` again")
        tracker.finish("ok", "", bytes=tracker.done, path=str(snap.path))
        out[role] = str(snap.path)
    return out


def cache_path(ref: ModelRef) -> Path | None:
    from damoc.registry.hfcache import cached_snapshot

    snap = cached_snapshot(ref.id, ref.revision)
    return snap.path if snap else None
