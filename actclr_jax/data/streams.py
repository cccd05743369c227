"""Input streams (NOTES.md): joint, motion and bone, for numpy or jax arrays.

Arrays are (..., C, T, V, M): time is axis -3 and joints axis -2.
"""

from __future__ import annotations

import numpy as np

from actclr_jax import graph

STREAMS = ("joint", "motion", "bone")


def motion(x):
  """m[t] = x[t + 1] - x[t]; the last frame is 0."""
  xp = _namespace(x)
  diff = x[..., 1:, :, :] - x[..., :-1, :, :]
  return xp.concatenate([diff, xp.zeros_like(x[..., :1, :, :])], axis=-3)


def bone(x, layout: graph.Layout):
  """b[v] = x[v] - x[parent(v)]; the centre joint's bone is 0."""
  return x - x[..., np.asarray(layout.parents), :]


def to_stream(x, stream: str, layout: graph.Layout):
  """Converts joint coordinates (..., C, T, V, M) to `stream`."""
  if stream == "joint":
    return x
  if stream == "motion":
    return motion(x)
  if stream == "bone":
    return bone(x, layout)
  raise ValueError(f"Unknown stream {stream!r} (config key data.stream); expected one of {STREAMS}")


def _namespace(x):
  if isinstance(x, np.ndarray):
    return np
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  return jnp
