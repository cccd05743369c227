"""The evaluator interface and the record every evaluator writes.

An evaluator has a `name` (its `--mode` of main.py) and `run(config, workdir) -> record`: it
evaluates the pretraining checkpoint of `workdir` (or the runs its config names), writes
`{workdir}/eval/{name}.json` = {mode, config, checkpoint, step, metrics, seconds}, prints one
summary line and returns that record. On several hosts every process computes the same result
and process 0 writes the files.
"""

from __future__ import annotations

import abc
import json
import os
import time
from typing import ClassVar

import jax
import ml_collections
import numpy as np

from actclr_jax.data import io


class Evaluator(abc.ABC):
  """One evaluation protocol; see the module docstring."""

  name: ClassVar[str]

  @abc.abstractmethod
  def run(self, config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Evaluates, writes `{workdir}/eval/{name}.json` and returns its record."""

  def finish(self, config, workdir: str, step, checkpoint, metrics: dict, start: float,
             aliases: tuple[str, ...] = ()) -> dict:
    """Writes the record of `metrics` to `{workdir}/eval/{name}.json` (and to each alias),
    prints a summary line of its float metrics and returns the record."""
    record = {"mode": self.name, "config": json.loads(config.to_json_best_effort()),
              "checkpoint": checkpoint, "step": step, "metrics": metrics,
              "seconds": time.time() - start}
    if jax.process_index() == 0:
      for name in (self.name,) + aliases:
        with io.atomic_path(os.path.join(workdir, "eval", f"{name}.json")) as tmp:
          with open(tmp, "w") as f:
            json.dump(record, f, indent=2)
    scalars = ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()
                        if isinstance(v, float) and k != "seconds")
    print(f"[{self.name}] step {step}: {scalars}", flush=True)
    return record

  def save_logits(self, workdir: str, logits: np.ndarray, labels: np.ndarray) -> None:
    """Writes `{workdir}/eval/{name}_val_{logits,labels}.npy` (M, classes) and (M,): what the
    ensemble reads."""
    if jax.process_index() == 0:
      io.save_npy(os.path.join(workdir, "eval", f"{self.name}_val_logits.npy"),
                  np.asarray(logits, np.float32))
      io.save_npy(os.path.join(workdir, "eval", f"{self.name}_val_labels.npy"),
                  np.asarray(labels, np.int64))
