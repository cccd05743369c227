"""Logging setup shared by the command-line entry points."""

from __future__ import annotations

import logging as std_logging
import os

from absl import logging


class _QuietLibraries(std_logging.Filter):
  """Drops the INFO (and lower) records that orbax and grain log on every checkpoint and
  loader start, so that the run's own progress lines are readable."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    noisy = any(f"{os.sep}{name}{os.sep}" in record.pathname for name in ("orbax", "grain"))
    return record.levelno > std_logging.INFO or not noisy


def quiet_library_logs() -> None:
  """Hides orbax's and grain's INFO lines (warnings and errors still show)."""
  logging.get_absl_handler().addFilter(_QuietLibraries())
