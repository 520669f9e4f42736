"""Structured JSON logs; every record carries the job id of the work in hand."""

from __future__ import annotations

import contextvars
import logging
import sys
from contextlib import contextmanager

from pythonjsonlogger.json import JsonFormatter

_job_id: contextvars.ContextVar[str] = contextvars.ContextVar("job_id", default="")
_service = ""  # one service per process: a plain global reaches every thread


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = _job_id.get()
        record.service = _service
        return True


def configure_logging(service: str, level: str = "INFO", json_logs: bool = True) -> None:
    global _service
    _service = service
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    if json_logs:
        handler.setFormatter(
            JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s %(service)s %(job_id)s",
                          rename_fields={"levelname": "level", "asctime": "time"})
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(service)s %(job_id)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # kafka-python is chatty at INFO about every rebalance and connection.
    logging.getLogger("kafka").setLevel(logging.WARNING)


@contextmanager
def job_context(job_id: str):
    token = _job_id.set(job_id)
    try:
        yield
    finally:
        _job_id.reset(token)
