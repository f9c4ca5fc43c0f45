"""Issue 16, items 6, 8 (disk full for the registry) and 9 (Chat = Base, --name '', config.json as --chat): the
registry file is validated on load (entry and field named, a copy kept, never overwritten), before writing, and
file-system failures are one line naming the path."""
from __future__ import annotations

import errno
import json

import pytest
from click.testing import CliRunner

from damoc.cli import cli
from damoc.cli.common import run_cli
from damoc.errors import DamocError
from damoc.registry import RegistryStore, add_candidate
from damoc.registry.storage import StorageError
from damoc.registry.store import RegistryCorrupt
from tests.helpers.fakes import write_model


def _good_file(settings, tmp_path) -> dict:
    add_candidate(settings, str(write_model(tmp_path / "c", chat=True)), name="mine")
    return json.loads(settings.registry_path.read_text())


def _first(data: dict) -> dict:
    return next(iter(data["candidates"].values()))


WRONG = [
    ("chat 5", lambda d: _first(d).__setitem__("chat", 5), "chat is int"),
    ("chat id missing", lambda d: _first(d).__setitem__("chat", {"revision": None}), "chat.id"),
    ("base list", lambda d: _first(d).__setitem__("base", [1]), "base is list"),
    ("chat_facts list", lambda d: _first(d).__setitem__("chat_facts", [1]), "chat_facts is list"),
    ("facts layers text", lambda d: _first(d)["chat_facts"].__setitem__("layers", "many"), "chat_facts.layers"),
    ("name 7", lambda d: _first(d).__setitem__("name", 7), "name is int"),
    ("name with newline", lambda d: _first(d).__setitem__("name", "a\nb"), "name rule"),
    ("source", lambda d: _first(d).__setitem__("source", "hacker"), "source"),
    ("added_at", lambda d: _first(d).__setitem__("added_at", "yesterday"), "added_at"),
    ("trust text", lambda d: _first(d).__setitem__("trust_remote_code", "yes"), "trust_remote_code"),
    ("schema version text", lambda d: d["meta"][next(iter(d["meta"]))].__setitem__("schema_version", "one"),
     "schema_version"),
    ("hubfacts", lambda d: d.__setitem__("hubfacts", {"1": {"id": 3}}), "hubfacts"),
]


@pytest.mark.parametrize("what,mangle,field", WRONG, ids=[w[0] for w in WRONG])
def test_a_wrong_schema_document_is_reported_backed_up_and_kept(settings, tmp_path, what, mangle, field):
    data = _good_file(settings, tmp_path)
    mangle(data)
    settings.registry_path.write_text(json.dumps(data))
    bad = settings.registry_path.read_text()
    store = RegistryStore(settings)
    chat = write_model(tmp_path / "c2", chat=True)
    for op in (store.list, lambda: store.get("mine"), lambda: add_candidate(settings, str(chat), name="other"),
               lambda: store.remove("mine")):
        with pytest.raises(RegistryCorrupt) as e:
            op()
        assert field in e.value.message and "damoc registry reset" in e.value.hint
    assert settings.registry_path.read_text() == bad                 # never overwritten
    assert len(list(settings.registry_path.parent.glob("registry.json.corrupt-*"))) == 1
    # every command says so in one line (exit 2), and `registry add` writes nothing first
    for args in (["registry", "list"], ["registry", "add", "--chat", str(chat), "--name", "other"]):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code != 0 and isinstance(res.exception, RegistryCorrupt)
    assert settings.registry_path.read_text() == bad


@pytest.mark.parametrize("content", ["", "   \n\t\n"], ids=["empty", "whitespace"])
def test_an_empty_registry_file_is_reported_not_overwritten(settings, tmp_path, content):
    settings.registry_path.parent.mkdir(parents=True, exist_ok=True)
    settings.registry_path.write_text(content)
    with pytest.raises(RegistryCorrupt, match="empty|whitespace"):
        add_candidate(settings, str(write_model(tmp_path / "c", chat=True)), name="x")
    assert settings.registry_path.read_text() == content


def test_a_directory_in_place_of_the_registry(settings, tmp_path, capsys):
    settings.registry_path.mkdir(parents=True)
    rc = run_cli(cli, ["registry", "list"])
    err = capsys.readouterr().err
    assert rc == 2 and "is a directory" in err and "Traceback" not in err
    rc = run_cli(cli, ["registry", "add", "--chat", str(write_model(tmp_path / "c", chat=True)), "--name", "x"])
    err = capsys.readouterr().err
    assert rc == 2 and "is a directory" in err


@pytest.mark.parametrize("code,words", [(errno.ENOSPC, "no space left"), (errno.EROFS, "Read-only"),
                                        (errno.EACCES, "Permission denied")])
def test_a_full_or_read_only_disk_names_the_path(settings, tmp_path, monkeypatch, capsys, code, words):
    from damoc.registry import store as store_mod

    def fail(path, text):
        raise OSError(code, "x", str(path))

    monkeypatch.setattr(store_mod, "atomic_write_text", fail)
    chat = write_model(tmp_path / "c", chat=True)
    with pytest.raises(StorageError) as e:
        add_candidate(settings, str(chat), name="x")
    assert words in e.value.message and str(settings.registry_path) in e.value.message
    if code == errno.ENOSPC:
        assert "needed" in e.value.message and "free" in e.value.message
    rc = run_cli(cli, ["registry", "add", "--chat", str(chat), "--name", "x"])
    err = capsys.readouterr().err
    assert rc == 2 and words in err and "Traceback" not in err
    assert not settings.registry_path.exists()


def test_a_read_only_data_dir_for_the_lock(settings, tmp_path, monkeypatch, capsys):
    import filelock

    def denied(self, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(settings.registry_path) + ".lock")

    monkeypatch.setattr(filelock.FileLock, "acquire", denied)
    rc = run_cli(cli, ["registry", "add", "--chat", str(write_model(tmp_path / "c", chat=True)), "--name", "x"])
    err = capsys.readouterr().err
    assert rc == 2 and "Permission denied" in err and ".lock" in err and "Traceback" not in err


def test_nothing_invalid_is_ever_written(settings):
    from damoc.registry import Candidate, ModelFacts, ModelRef

    bad = Candidate("ok-name", ModelRef("a/b"), chat_facts=ModelFacts(layers="many"))  # type: ignore[arg-type]
    with pytest.raises(DamocError, match="refusing to write"):
        RegistryStore(settings).add(bad)
    assert not settings.registry_path.exists()


# -- sharp edges ----------------------------------------------------------------------------------------------------

def test_chat_and_base_the_same_folder_is_not_sparse_merging(settings, tmp_path):
    from damoc.registry import Candidate, ModelRef

    folder = write_model(tmp_path / "m", chat=True)
    with pytest.raises(DamocError, match="task vector") as e:
        add_candidate(settings, str(folder), str(folder), name="same")
    assert "omit --base" in e.value.hint
    # an entry stored by other means (scan, an older version) is assessed the same way
    RegistryStore(settings).add(Candidate("same", ModelRef(str(folder)), ModelRef(str(folder))))
    c = RegistryStore(settings).get("same")
    assert not c.merge_supported and "task vector" in c.merge_reason


def test_an_empty_name_is_refused_not_replaced(settings, tmp_path):
    res = CliRunner().invoke(cli, ["registry", "add", "--chat", str(write_model(tmp_path / "m", chat=True)),
                                   "--name", ""])
    assert res.exit_code != 0 and "invalid candidate name ''" in str(res.exception)
    assert not settings.registry_path.exists()


def test_config_json_given_as_the_chat_points_at_its_folder(settings, tmp_path, capsys):
    folder = write_model(tmp_path / "m", chat=True)
    rc = run_cli(cli, ["registry", "add", "--chat", str(folder / "config.json"), "--name", "x"])
    err = capsys.readouterr().err
    assert rc == 2 and "is a file, not a model folder" in err and str(folder.resolve()) in err
