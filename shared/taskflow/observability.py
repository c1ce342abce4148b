"""Process-wide logging for the functions: one line per record, level from TASKFLOW_LOG_LEVEL."""

from __future__ import annotations

import logging
import os


def configure_logging() -> None:
    """Idempotent; safe to call at import time (it performs no I/O beyond stderr)."""
    level = os.environ.get("TASKFLOW_LOG_LEVEL", "INFO").upper()
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    logging.getLogger("taskflow").setLevel(level)
