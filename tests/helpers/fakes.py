"""Small fake model folders, a fake Hugging Face cache and a fake hub on loopback, for the registry tests.

The folders are real enough for the code under test: a config.json, safetensors files written by
`safetensors.numpy.save_file` (real headers), a tokenizer_config.json, and the
`models--org--name/{blobs,refs,snapshots/<commit>}` layout that `huggingface_hub.scan_cache_dir` reads.
tests/test_registry_fakes.py checks that the libraries themselves recognise the fakes.
"""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

import numpy as np

ARCHS = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM",
         "gemma2": "Gemma2ForCausalLM"}


def model_tensors(*, layers: int = 2, hidden: int = 16, inter: int = 32, vocab: int = 64, seed: int = 0,
                  drop: tuple[str, ...] = (), reshape: dict[str, tuple[int, ...]] | None = None
                  ) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,),
                                          "lm_head.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        for m in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[p + f"self_attn.{m}.weight"] = (hidden, hidden)
        shapes[p + "mlp.gate_proj.weight"] = (inter, hidden)
        shapes[p + "mlp.up_proj.weight"] = (inter, hidden)
        shapes[p + "mlp.down_proj.weight"] = (hidden, inter)
        shapes[p + "input_layernorm.weight"] = (hidden,)
        shapes[p + "post_attention_layernorm.weight"] = (hidden,)
    shapes.update(reshape or {})
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items() if k not in drop}


def write_model(folder: Path, *, arch: str = "llama", layers: int = 2, hidden: int = 16, inter: int = 32,
                vocab: int = 64, heads: int = 2, chat: bool = False, seed: int = 0, shards: int = 1,
                drop: tuple[str, ...] = (), reshape: dict[str, tuple[int, ...]] | None = None,
                config_extra: dict[str, Any] | None = None, license: str | None = None) -> Path:
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"model_type": arch, "architectures": [ARCHS.get(arch, "X")], "num_hidden_layers": layers,
           "hidden_size": hidden, "intermediate_size": inter, "vocab_size": vocab, "num_attention_heads": heads,
           "num_key_value_heads": heads, "torch_dtype": "float32", **(config_extra or {})}
    (folder / "config.json").write_text(json.dumps(cfg))
    tc = {"model_max_length": 128} | ({"chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"}
                                      if chat else {})
    (folder / "tokenizer_config.json").write_text(json.dumps(tc))
    if license:
        (folder / "README.md").write_text(f"---\nlicense: {license}\n---\n# model\n")
    t = model_tensors(layers=layers, hidden=hidden, inter=inter, vocab=vocab, seed=seed, drop=drop, reshape=reshape)
    if shards == 1:
        save_file(t, str(folder / "model.safetensors"))
    else:
        names = sorted(t)
        weight_map = {}
        for s in range(shards):
            part = {n: t[n] for n in names[s::shards]}
            fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            save_file(part, str(folder / fname))
            weight_map.update({n: fname for n in part})
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def write_cached(cache: Path, repo_id: str, *, complete: bool = True, **kw: Any) -> Path:
    """A model in the HF cache layout: files in blobs/ (named by hash), symlinked from snapshots/<commit>/."""
    org, name = repo_id.split("/")
    repo = Path(cache) / f"models--{org}--{name}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    staging = repo / ".staging"
    write_model(staging, **kw)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for f in sorted(staging.iterdir()):
        if not complete and f.suffix == ".safetensors":
            f.unlink()                    # a partial download: config present, weights not yet
            continue
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snap / f.name
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, snap))
        f.unlink()
    staging.rmdir()
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snap


# -- a fake hub on loopback -------------------------------------------------------------------------------------------

class FakeHub:
    """Serves /api/models/<repo> and /<repo>/resolve/<rev>/<file> for the repos given (files: name -> bytes).
    `gated` repos answer 403 GatedRepo on file downloads, like the real hub without accepted terms."""

    def __init__(self, repos: dict[str, dict[str, bytes]], gated: set[str] | None = None,
                 config: dict[str, dict[str, Any]] | None = None, fail_once: set[str] | None = None) -> None:
        self.repos, self.gated, self.config = repos, gated or set(), config or {}
        self.fail_once = set(fail_once or ())     # file names whose first GET answers 500 (an interrupted pull)
        self.requests: list[tuple[str, str, str | None]] = []     # (method, path, Range header)
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def _route(self) -> tuple[str, str | None, bytes | None]:
                path = self.path.split("?")[0]
                hub.requests.append((self.command, path, self.headers.get("Range")))
                if path.startswith("/api/models/"):
                    rest = path[len("/api/models/"):]
                    repo = "/".join(rest.split("/")[:2])
                    return "api", repo, None
                parts = path.strip("/").split("/")
                if len(parts) >= 5 and parts[2] == "resolve":
                    return "file", "/".join(parts[:2]), "/".join(parts[4:]).encode()
                return "none", None, None

            def _send(self, code: int, body: bytes, headers: dict[str, str], head: bool = False) -> None:
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _handle(self, head: bool) -> None:
                kind, repo, fname = self._route()
                if repo not in hub.repos:
                    self._send(404, b'{"error":"Repository not found"}', {"X-Error-Code": "RepoNotFound",
                                                                          "Content-Type": "application/json"}, head)
                    return
                files = hub.repos[repo]
                commit = hashlib.sha1(repo.encode()).hexdigest()
                if kind == "api":
                    body = json.dumps({
                        "id": repo, "modelId": repo, "sha": commit, "private": False,
                        "gated": "manual" if repo in hub.gated else False,
                        "siblings": [{"rfilename": n, "size": len(b)} for n, b in files.items()],
                        "config": hub.config.get(repo, {"model_type": "llama"}),
                        "cardData": {"license": "apache-2.0"}, "tags": [],
                    }).encode()
                    self._send(200, body, {"Content-Type": "application/json"}, head)
                    return
                name = fname.decode() if fname else ""
                if repo in hub.gated:
                    self._send(403, b'{"error":"Access to model is restricted"}',
                               {"X-Error-Code": "GatedRepo", "X-Error-Message": "Access to model is restricted",
                                "Content-Type": "application/json"}, head)
                    return
                if name not in files:
                    self._send(404, b"{}", {"X-Error-Code": "EntryNotFound"}, head)
                    return
                if not head and name in hub.fail_once:
                    hub.fail_once.discard(name)
                    self._send(500, b"{}", {}, head)
                    return
                data = files[name]
                etag = hashlib.sha256(data).hexdigest()
                headers = {"X-Repo-Commit": commit, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
                rng = self.headers.get("Range")
                if rng and not head:
                    start = int(rng.split("=")[1].split("-")[0])
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                    self._send(206, data[start:], headers)
                    return
                self._send(200, data, headers, head)

            def do_GET(self) -> None:
                self._handle(False)

            def do_HEAD(self) -> None:
                self._handle(True)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class SilentServer:
    """Accepts TCP connections on loopback and never answers: the 'hub hangs' case."""

    def __enter__(self) -> "SilentServer":
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        return self

    def __exit__(self, *exc: Any) -> None:
        self.sock.close()


def model_files(**kw: Any) -> dict[str, bytes]:
    """The files of a fake model, as bytes (to serve from FakeHub)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        write_model(Path(d), **kw)
        return {p.name: p.read_bytes() for p in Path(d).iterdir()}
