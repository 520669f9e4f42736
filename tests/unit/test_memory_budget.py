"""The memory budget: the container's limit, the byte semaphore both front ends hold through
jobpath.prepare, the estimate from the headers, and the catalog generator's bounded canvases."""

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from studioline.shared import jobpath, memory, steps
from studioline.shared.config import LimitSettings
from studioline.shared.errors import ImageRejected, InvalidParams, TransientError
from studioline.shared.imageio import read_header
from studioline.shared.memory import ByteBudget, MemoryBusy, budget_bytes, container_memory_limit, process_budget

MB = 1 << 20


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


PHOTO = png(Image.new("RGB", (300, 200), (120, 130, 140)))


# ---- the container's limit and the budget -----------------------------------------------


@pytest.mark.parametrize("text, expected", [("1073741824\n", 1 << 30), ("max\n", 123 * MB), (None, 123 * MB),
                                           ("9223372036854771712\n", 123 * MB)])  # v1: no limit
def test_limit_from_the_cgroup_else_config(tmp_path, text, expected):
    path = tmp_path / "memory.max"
    if text is not None:
        path.write_text(text)
    assert container_memory_limit(123 * MB, path) == expected


def test_budget_is_a_share_of_the_limit(tmp_path):
    path = tmp_path / "memory.max"
    path.write_text(str(4 << 30))
    assert budget_bytes(LimitSettings(memory_fraction=0.5), path) == 2 << 30
    assert budget_bytes(LimitSettings(memory_limit_bytes=1 << 30, memory_fraction=0.25), tmp_path / "none") == 256 * MB


def test_one_budget_per_process():
    limits = LimitSettings(memory_limit_bytes=777 * MB)
    assert process_budget(limits) is process_budget(LimitSettings(memory_limit_bytes=777 * MB))
    assert process_budget(limits).capacity == budget_bytes(limits)


# ---- the byte semaphore -----------------------------------------------------------------


def test_acquire_and_release():
    budget = ByteBudget(100)
    held = budget.acquire(60, timeout=1)
    assert budget.free == 40
    held.release()
    held.release()  # idempotent: a front end's error path may release twice
    assert budget.free == 100
    with budget.acquire(100, timeout=1):
        assert budget.free == 0
    assert budget.free == 100
    with pytest.raises(ValueError, match="never fit"):
        budget.acquire(101, timeout=1)


def _in_thread(fn):
    result = {}

    def run():
        try:
            result["value"] = fn()
        except Exception as exc:
            result["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, result


def test_waiters_are_served_in_arrival_order():
    budget = ByteBudget(100)
    first = budget.acquire(60, timeout=1)
    big_t, big = _in_thread(lambda: budget.acquire(50, timeout=5))
    time.sleep(0.1)
    small_t, small = _in_thread(lambda: budget.acquire(10, timeout=5))
    time.sleep(0.1)
    # 10 bytes are free for the small request, but the big one came first.
    assert not big and not small
    first.release()
    big_t.join(2)
    small_t.join(2)
    assert big["value"].nbytes == 50 and small["value"].nbytes == 10 and budget.free == 40


def test_a_thread_that_holds_bytes_never_waits_for_more():
    """The Kafka loop prepares a batch before running it: waiting for its own bytes would never end."""
    budget = ByteBudget(100)
    budget.acquire(60, timeout=1)
    start = time.perf_counter()
    with pytest.raises(MemoryBusy, match="while this thread holds"):
        budget.acquire(50, timeout=10)
    assert time.perf_counter() - start < 1
    assert budget.acquire(40, timeout=0).nbytes == 40  # what fits is granted at once


def test_waiting_ends_in_a_transient_error():
    budget = ByteBudget(100)
    t, _ = _in_thread(lambda: budget.acquire(100, timeout=1))
    t.join()
    with pytest.raises(MemoryBusy) as err:
        budget.acquire(1, timeout=0.05)
    assert isinstance(err.value, TransientError) and err.value.code == "memory_busy" and "waited" in str(err.value)


def test_concurrent_holders_never_exceed_the_capacity():
    budget = ByteBudget(1000)
    lock = threading.Lock()
    held = [0]
    peak = [0]
    rng = np.random.default_rng(0)
    sizes = rng.integers(100, 700, size=(8, 25))

    def worker(row):
        for n in row:
            with budget.acquire(int(n), timeout=10):
                with lock:
                    held[0] += int(n)
                    peak[0] = max(peak[0], held[0])
                time.sleep(0.001)
                with lock:
                    held[0] -= int(n)

    threads = [threading.Thread(target=worker, args=(row,)) for row in sizes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 700 < peak[0] <= 1000 and budget.free == 1000


# ---- the estimate and jobpath.prepare ---------------------------------------------------


def test_estimate_counts_decoded_buffers_inputs_and_outputs():
    segmenter = steps.spec("segmenter")
    header = read_header(PHOTO, LimitSettings())
    arrays = 300 * 200 * 3 + 300 * 200 * 1  # the RGB image handed, the mask written
    expected = header.decoded_bytes + int(segmenter.memory_factor * arrays)
    assert jobpath.memory_estimate(segmenter, segmenter.params(), [(header, "rgb")]) == expected
    classifier = steps.spec("classifier")  # writes nothing
    expected = header.decoded_bytes + int(classifier.memory_factor * 300 * 200 * 3)
    assert jobpath.memory_estimate(classifier, classifier.params(), [(header, "rgb")]) == expected


def test_catalog_canvases_count_with_their_own_factor():
    catalog = steps.spec("catalog-generator")
    params = catalog.parse_params({"sizes": ["1000x1000", "2000x1000"]})
    header = read_header(PHOTO, LimitSettings())
    cutout = read_header(png(Image.new("RGBA", (300, 200))), LimitSettings())
    handed = 300 * 200 * 3 + 300 * 200 * 4
    written = 3_000_000 * 3
    expected = header.decoded_bytes + cutout.decoded_bytes + int(catalog.memory_factor * handed + catalog.output_factor * written)
    assert jobpath.memory_estimate(catalog, params, [(header, "rgb"), (cutout, "rgba")]) == expected


def test_over_budget_is_rejected_before_decoding(monkeypatch, tmp_path):
    monkeypatch.setattr(memory, "CGROUP_MEMORY_MAX", tmp_path / "none")  # the config's limit, here too
    decoded = []
    monkeypatch.setattr(jobpath, "decode_image", lambda *a, **k: decoded.append(1))
    spec = steps.spec("segmenter")
    big = png(Image.new("RGB", (4000, 4000)))
    limits = LimitSettings(memory_limit_bytes=256 * MB, memory_fraction=0.5)
    with pytest.raises(ImageRejected) as err:
        jobpath.prepare(spec, spec.params(), jobpath.Blob(big), {}, limits)
    assert err.value.code == "over_budget" and not decoded
    message = str(err.value)
    assert "4000x4000" in message and "of memory" in message and "budget of 128 MB" in message


def test_prepare_holds_its_bytes_until_released():
    spec = steps.spec("classifier")
    budget = ByteBudget(64 * MB)
    prepared = jobpath.prepare(spec, spec.params(), jobpath.Blob(PHOTO), {}, LimitSettings(), budget=budget)
    need = jobpath.memory_estimate(spec, spec.params(), [(read_header(PHOTO, LimitSettings()), "rgb")])
    assert budget.free == 64 * MB - need
    prepared.release()
    prepared.release()
    assert budget.free == 64 * MB
    # Without a budget nothing is held, and release is a no-op.
    jobpath.prepare(spec, spec.params(), jobpath.Blob(PHOTO), {}, LimitSettings()).release()


def test_a_failed_decode_gives_its_bytes_back():
    spec = steps.spec("classifier")
    budget = ByteBudget(64 * MB)
    data = png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 300, 3), np.uint8)))
    with pytest.raises(ImageRejected, match="truncated"):
        jobpath.prepare(spec, spec.params(), jobpath.Blob(data[: len(data) // 2]), {}, LimitSettings(), budget=budget)
    assert budget.free == 64 * MB


def test_a_batch_in_one_thread_is_deferred_not_deadlocked():
    """The Kafka loop prepares a batch in one thread: an item that does not fit beside the ones it
    holds fails at once, transiently, and goes through once those are released."""
    spec = steps.spec("classifier")
    need = jobpath.memory_estimate(spec, spec.params(), [(read_header(PHOTO, LimitSettings()), "rgb")])
    budget = ByteBudget(need + need // 2)
    first = jobpath.prepare(spec, spec.params(), jobpath.Blob(PHOTO), {}, LimitSettings(), budget=budget)
    with pytest.raises(MemoryBusy):
        jobpath.prepare(spec, spec.params(), jobpath.Blob(PHOTO), {}, LimitSettings(), budget=budget)
    first.release()
    jobpath.prepare(spec, spec.params(), jobpath.Blob(PHOTO), {}, LimitSettings(), budget=budget).release()
    assert budget.free == budget.capacity


def test_concurrent_requests_wait_for_the_budget():
    """Four 16-bit images at once (the issue's four greyscale bombs, smaller): the budget holds
    two at a time, the others wait and then go through."""
    spec = steps.spec("classifier")
    data = png(Image.new("I;16", (1500, 1500), 40000))
    need = jobpath.memory_estimate(spec, spec.params(), [(read_header(data, LimitSettings()), "rgb")])
    budget = ByteBudget(2 * need + need // 2)
    lock = threading.Lock()
    inside, peak, done = [0], [0], []

    def request():
        prepared = jobpath.prepare(spec, spec.params(), jobpath.Blob(data), {}, LimitSettings(), budget=budget)
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        time.sleep(0.2)  # the step runs and its outputs are encoded
        with lock:
            inside[0] -= 1
        prepared.release()
        done.append(prepared.item.image.shape)

    threads = [threading.Thread(target=request) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert done == [(1500, 1500, 3)] * 4 and peak[0] == 2 and budget.free == budget.capacity


def test_huge_catalog_canvases_are_over_budget_from_a_small_cut_out():
    catalog = steps.spec("catalog-generator")
    params = catalog.parse_params({"sizes": ["7000x7000"]})
    cutout = jobpath.Blob(png(Image.new("RGBA", (300, 200), (10, 20, 30, 255))), "cutout")
    limits = LimitSettings(memory_limit_bytes=2 << 30)
    with pytest.raises(ImageRejected) as err:
        jobpath.prepare(catalog, params, jobpath.Blob(PHOTO), {"cutout": cutout}, limits, budget=ByteBudget(1 << 30))
    assert err.value.code == "over_budget"


# ---- the catalog generator's canvases -----------------------------------------------------


def test_catalog_canvases_are_bounded_count_times_size():
    catalog = steps.spec("catalog-generator")
    with pytest.raises(InvalidParams, match=r"8 size\(s\) make 536\.6 MP.*50 MP"):
        catalog.parse_params({"sizes": [f"8192x{8192 - i}" for i in range(8)]})
    # Try-on multiplies: sizes x templates x (1 + colourways).
    with pytest.raises(InvalidParams, match=r"2 size\(s\) x 3 template\(s\) x 3 colourway\(s\)"):
        catalog.parse_params({"sizes": ["2000x2000", "3000x3000"], "template_ids": ["a", "b", "c"], "colourways": [30, 60]})
    ok = catalog.parse_params({"sizes": ["2500x2500", "2000x2000"], "template_ids": ["a", "b"], "colourways": [90]})
    assert ok.output_pixels(1, 1) == (6_250_000 + 4_000_000) * 2 * 2 + 2 * 384 * 512
    assert catalog.parse_params({"sizes": ["7000x7000"]}).output_pixels(10, 10) == 49_000_000
