"""Checkpoints of a pretraining run: what is saved, restoring with fallback, and preemption.

A checkpoint at step s holds the train state, the grain iterator of the epoch that step s
belongs to (so that a mid-epoch resume reads exactly the batches an uninterrupted run would)
and the running sums of the epoch's logged metrics. Restoring walks back from the newest
checkpoint: one that cannot be read is moved aside with a one-line warning, and the next older
one is tried.
"""

from __future__ import annotations

import logging as std_logging
import os
import shutil
import signal
import sys
import threading
from typing import Any, Callable, Iterator

from absl import logging
import grain
import jax
import ml_collections
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """No checkpoint of a run directory could be restored."""


def _one_line(error: BaseException, limit: int = 240) -> str:
  """The innermost cause of `error` (e.g. TensorStore's 'OUT_OF_RANGE: Error reading
  "params..."') on one line."""
  while error.__cause__ is not None:
    error = error.__cause__
  text = " ".join(str(error).split())
  text = text if len(text) <= limit else text[:limit] + "..."
  return f"{type(error).__name__}: {text}"


def _is_echo(error: BaseException | None) -> bool:
  return error is not None and (str(error) == "Event loop is closed" or str(error).startswith(
      "Encountered error while reading array"))


def _silence_closed_event_loop_callbacks() -> None:
  """Drops the echoes of a failed orbax restore.

  When one array of a checkpoint cannot be read, orbax's restore raises and closes its event
  loop while TensorStore still completes the other reads: each completion, and each abandoned
  read coroutine, then reports an error (hundreds for one checkpoint) that would bury the
  one-line warning. A completion arrives either as an unraisable error or, from TensorStore's
  own threads, through sys.excepthook, and possibly before the restore's exception reaches us,
  so both hooks are filtered before the first restore. Other errors reach the previous hooks.
  """
  previous = sys.unraisablehook
  if getattr(previous, "_actclr_filter", False):
    return

  def unraisable_hook(unraisable):
    if not _is_echo(unraisable.exc_value):
      previous(unraisable)

  previous_excepthook = sys.excepthook

  def excepthook(kind, value, traceback):
    if not _is_echo(value):
      previous_excepthook(kind, value, traceback)

  unraisable_hook._actclr_filter = True  # pylint: disable=protected-access
  sys.unraisablehook = unraisable_hook
  sys.excepthook = excepthook
  # The reads that did fail are also logged by asyncio as never-retrieved exceptions, of a Task
  # or of the _GatheringFuture that collected them.
  std_logging.getLogger("asyncio").addFilter(_is_not_a_logged_echo)


def _is_not_a_logged_echo(record: std_logging.LogRecord) -> bool:
  """False for asyncio's report of a read task, or of the future gathering the reads, that failed
  with a restore's echo (a Task's is dropped whatever its error, as the failed read itself)."""
  message = str(record.msg)
  if message.startswith("Task exception was never retrieved"):
    return False
  exception = record.exc_info[1] if record.exc_info else None
  return not (message.split("\n", 1)[0].endswith("exception was never retrieved")
              and _is_echo(exception))


class Checkpointer:
  """Saves and restores {state, data iterator, progress} under workdir/checkpoints.

  Unreadable checkpoints are moved to workdir/corrupt_checkpoints/<step>, so that the step can
  be saved again when training reaches it.
  """

  def __init__(self, workdir: str, config: ml_collections.ConfigDict):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self._quarantine = os.path.abspath(os.path.join(workdir, "corrupt_checkpoints"))
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True))

  def save(self, step: int, state, iterator, progress: dict) -> None:
    """Writes a checkpoint at `step` (asynchronously; `wait` blocks until it is committed)."""
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(iterator),
        progress=ocp.args.JsonSave(progress)), force=True)

  def restore_latest(self, abstract_state, make_iterator: Callable[[int], Iterator],
                     steps_per_epoch: int) -> tuple[int, Any, Iterator, dict] | None:
    """(step, state, iterator, progress) of the newest readable checkpoint, or None when the
    directory holds no checkpoint. make_iterator(epoch) builds that epoch's fresh iterator, into
    which the saved position is restored. Raises CheckpointError when none is readable."""
    steps = sorted(self._manager.all_steps(), reverse=True)
    if not steps:
      return None
    _silence_closed_event_loop_callbacks()
    failures = []
    for step in steps:
      iterator = make_iterator(step // steps_per_epoch)
      try:
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=grain.checkpoint.CheckpointRestore(iterator),
            progress=ocp.args.JsonRestore()))
      except Exception as error:  # pylint: disable=broad-except
        # Any failure to read (truncated or missing file, bad metadata) means the same thing
        # here: this step cannot be resumed from, and an older one may be.
        failures.append(f"step {step}: {_one_line(error)}")
        self._set_aside(step, error, older=[s for s in steps if s < step])
        continue
      return step, restored["state"], iterator, dict(restored["progress"] or {})
    raise CheckpointError(
        f"no readable checkpoint in {self.directory} (tried steps {steps}; unreadable ones were "
        f"moved to {self._quarantine}): " + "; ".join(failures))

  def _set_aside(self, step: int, error: BaseException, older: list[int]) -> None:
    path = os.path.join(self.directory, str(step))
    target = os.path.join(self._quarantine, str(step))
    if jax.process_index() == 0:
      os.makedirs(self._quarantine, exist_ok=True)
      if os.path.exists(target):
        shutil.rmtree(target)
      shutil.move(path, target)
    if jax.process_count() > 1:
      ocp.multihost.sync_global_processes(f"actclr_set_aside_checkpoint_{step}")
    self._manager.reload()
    fallback = f"falling back to step {older[0]}" if older else "no older checkpoint"
    logging.warning("checkpoint %s is unreadable (%s); moved to %s, %s", path, _one_line(error),
                    target, fallback)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


class Preemption:
  """Whether the run has been asked to stop (SIGTERM), agreed across processes.

  One process: a SIGTERM handler sets a flag that the loop reads between steps. Several
  processes: JAX's preemption sync point (jax.distributed installs the SIGTERM notifier), so
  that every process saves at the same step. Use as a context manager; the previous handler is
  restored on exit.
  """

  def __init__(self):
    self._requested = threading.Event()
    self._previous = None
    self._multi_process = jax.process_count() > 1

  def __enter__(self) -> "Preemption":
    if not self._multi_process and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._on_signal)
    return self

  def __exit__(self, *exc) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def _on_signal(self, signum, frame) -> None:
    del signum, frame
    self._requested.set()

  def reached(self, step: int) -> bool:
    """True once a stop was requested: save at `step` and exit."""
    if self._multi_process:
      return bool(ocp.multihost.reached_preemption(step))
    return self._requested.is_set()
