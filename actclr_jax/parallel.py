"""Data parallelism: the device mesh and global arrays built from per-process batches.

Shared by pretraining and every evaluation protocol (a leaf module: it imports no other part
of the package).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh(devices=None) -> Mesh:
  """A 1-D data-parallel mesh over `devices` (default: every device of every process)."""
  return Mesh(np.asarray(jax.devices() if devices is None else devices), ("data",))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the mesh."""
  return NamedSharding(mesh, P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
  """The whole array on every device."""
  return NamedSharding(mesh, P())


def local_batch_sharding() -> NamedSharding:
  """Batch sharding over this process's devices only: for evaluation, where every process reads
  the whole split."""
  return batch_sharding(make_mesh(jax.local_devices()))


def to_global(batch: dict, sharding: NamedSharding) -> dict:
  """Assembles each process's numpy batch into global arrays sharded on the leading axis."""
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


def replicate(tree, sharding: NamedSharding):
  """A pytree that every process holds in full (e.g. a fresh train state, built identically
  from the same seed in each process), as global arrays replicated by `sharding`."""
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  return jax.tree.map(
      lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), tree)
