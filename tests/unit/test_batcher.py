"""The dynamic batcher (shared/runtime.py StepRunner): batch size, queue delay, gRPC ahead of
Kafka, and one failing item never failing the others."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from studioline.shared.config import BatchingSettings, Settings
from studioline.shared.runtime import StepRunner
from studioline.shared.spec import StepSpec
from studioline.shared.step import OutputImage, Step, StepInput, StepOutput, StepParams


class _Params(StepParams):
    fail: bool = False


class RecordingStep(Step):
    """Inverts images and records the batches it was given; `gate` holds the first batch."""

    spec = StepSpec(name="recording", params=_Params, implementation=f"{__name__}:RecordingStep", rpc="", method="")

    def __init__(self, gate: threading.Event | None = None, batch_bug: bool = False):
        super().__init__(None, None)
        self.batches: list[list[str]] = []
        self.gate = gate
        self.started = threading.Event()
        self.batch_bug = batch_bug

    def run_batch(self, items):
        self.batches.append([item.job_id for item in items])
        self.started.set()
        if self.gate is not None:
            self.gate.wait(10)
            self.gate = None
        if self.batch_bug and len(items) > 1:
            raise RuntimeError("batch code broken")
        return super().run_batch(items)

    def run(self, item: StepInput) -> StepOutput:
        if item.params.fail:
            raise ValueError(f"{item.job_id} is bad")
        return StepOutput(images=[OutputImage("inverted", 255 - item.image)])


def _item(job_id: str, fail: bool = False) -> StepInput:
    return StepInput(image=np.full((4, 4, 3), 10, np.uint8), params=_Params(fail=fail), job_id=job_id)


def _runner(step, size=8, delay_ms=0.0) -> StepRunner:
    return StepRunner(step, BatchingSettings(max_batch_size=size, max_queue_delay_ms=delay_ms))


def test_batches_are_cut_at_the_maximum_size():
    step = RecordingStep()
    runner = _runner(step, size=4, delay_ms=1000)
    results, per_item = runner.run([_item(f"k{i}") for i in range(10)], source="kafka")
    runner.close()
    assert [len(b) for b in step.batches] == [4, 4, 2]
    assert [b for batch in step.batches for b in batch] == [f"k{i}" for i in range(10)]
    assert all(int(r.images[0].pixels[0, 0, 0]) == 245 for r in results)
    assert per_item > 0


def test_grpc_requests_go_ahead_of_queued_kafka_work():
    gate = threading.Event()
    step = RecordingStep(gate)
    runner = _runner(step, size=3)
    first = runner.submit([_item("busy")], "kafka")
    assert step.started.wait(5)  # the model is busy with the first batch
    kafka = runner.submit([_item(f"k{i}") for i in range(4)], "kafka")
    grpc = runner.submit([_item("g0"), _item("g1")], "grpc")
    gate.set()
    for future in first + kafka + grpc:
        future.result(timeout=10)
    runner.close()
    assert step.batches == [["busy"], ["g0", "g1", "k0"], ["k1", "k2", "k3"]]


def test_a_partial_batch_waits_for_more_at_most_the_queue_delay():
    step = RecordingStep()
    runner = _runner(step, size=4, delay_ms=400)
    start = time.perf_counter()
    first = runner.submit([_item("a")], "kafka")
    time.sleep(0.05)
    second = runner.submit([_item("b")], "grpc")
    for future in first + second:
        future.result(timeout=10)
    waited = time.perf_counter() - start
    runner.close()
    # Both arrived within the delay, so they ran together, and no sooner than the delay allowed.
    assert step.batches == [["b", "a"]]
    assert waited >= 0.4


def test_a_full_batch_does_not_wait_for_the_delay():
    step = RecordingStep()
    runner = _runner(step, size=2, delay_ms=10_000)
    results, _ = runner.run([_item("a"), _item("b")], source="kafka")
    runner.close()
    assert step.batches == [["a", "b"]] and len(results) == 2


def test_one_failing_item_does_not_fail_the_others():
    step = RecordingStep()
    runner = _runner(step)
    results, _ = runner.run([_item("ok1"), _item("bad", fail=True), _item("ok2")], source="kafka")
    runner.close()
    assert isinstance(results[1], ValueError) and "bad is bad" in str(results[1])
    assert isinstance(results[0], StepOutput) and isinstance(results[2], StepOutput)


def test_a_broken_batch_call_falls_back_to_one_item_at_a_time():
    step = RecordingStep(batch_bug=True)
    runner = _runner(step)
    results, _ = runner.run([_item("ok1"), _item("bad", fail=True), _item("ok2")], source="kafka")
    runner.close()
    assert step.batches[0] == ["ok1", "bad", "ok2"] and step.batches[1:] == [["ok1"], ["bad"], ["ok2"]]
    assert [type(r) for r in results] == [StepOutput, ValueError, StepOutput]


def test_a_closed_runner_refuses_new_work():
    runner = _runner(RecordingStep())
    runner.close()
    with pytest.raises(RuntimeError, match="shutting down"):
        runner.submit([_item("late")], "grpc")


def test_batching_settings_are_validated_and_env_overridable(monkeypatch):
    monkeypatch.setenv("STUDIOLINE_BATCHING__MAX_BATCH_SIZE", "16")
    monkeypatch.setenv("STUDIOLINE_BATCHING__MAX_QUEUE_DELAY_MS", "7.5")
    settings = Settings()
    assert settings.batching.max_batch_size == 16 and settings.batching.max_queue_delay_ms == 7.5
    monkeypatch.setenv("STUDIOLINE_BATCHING__MAX_BATCH_SIZE", "0")
    with pytest.raises(ValueError, match="max_batch_size"):
        Settings()
