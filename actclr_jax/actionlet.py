"""Unsupervised actionlet (Sec. 3.1, Eq. 3-5): where a sequence differs from the static anchor.

The offline encoder's dense map h (N, M, C, T', V) of a batch and the projected anchor
feature z_bar give, through the gradient of -sim(z, z_bar) with respect to h, channel
weights alpha (Eq. 4) and the map A = ReLU(sum_c alpha_c h_c) G (Eq. 5).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections

from actclr_jax import augment, graph
from actclr_jax.models import stgcn

ACTIVATIONS = {"relu": jax.nn.relu, "identity": lambda x: x}


def cosine_similarity(a: jax.Array, b: jax.Array, eps: float = 1e-8) -> jax.Array:
  """Cosine similarity over the last axis, broadcasting a (..., D) against b (..., D)."""
  a = a / (jnp.linalg.norm(a, axis=-1, keepdims=True) + eps)
  b = b / (jnp.linalg.norm(b, axis=-1, keepdims=True) + eps)
  return jnp.sum(a * b, axis=-1)


def dissimilarity_gradient(head: Callable[[jax.Array], jax.Array], dense: jax.Array,
                           anchor_z: jax.Array) -> jax.Array:
  """Delta h of Eq. 4: d(-sim(head(h_i), z_bar)) / d h_i for every sample i.

  Args:
    head: maps a dense map (N, M, C, T', V) to projected features (N, D); it must treat
      samples independently (GAP then projector), so summing over i gives per-sample grads.
    dense: (N, M, C, T', V) offline dense features.
    anchor_z: (D,) projected feature of the static anchor.
  Returns:
    (N, M, C, T', V) gradient.
  """
  return jax.grad(lambda h: -jnp.sum(cosine_similarity(head(h), anchor_z)))(dense)


def activation_map(dense: jax.Array, gradient: jax.Array, smoothing: jax.Array, *,
                   grad_activation: str = "relu") -> jax.Array:
  """Eq. 4-5: A_tv = ReLU(sum_c alpha_c h_ctv) G, per sample and body.

  Args:
    dense: (N, M, C, T', V) features h.
    gradient: (N, M, C, T', V) Delta h.
    smoothing: (V, V) G, applied as A[..., w] = sum_v A[..., v] G[v, w].
    grad_activation: sigma of Eq. 4, 'relu' (the paper) or 'identity' (Grad-CAM).
  Returns:
    (N, M, T', V) non-negative map.
  """
  alpha = jnp.mean(ACTIVATIONS[grad_activation](gradient), axis=(-2, -1))  # (N, M, C)
  cam = jax.nn.relu(jnp.einsum("nmc,nmctv->nmtv", alpha, dense))
  return jnp.einsum("nmtv,vw->nmtw", cam, smoothing)


def normalize_per_sample(cam: jax.Array, present: jax.Array | None = None,
                         eps: float = 1e-8) -> jax.Array:
  """Scales each sample's map, all its present bodies together, to [0, 1]; absent bodies get 0.

  One range per sample, not per body: an idle second person then scores low against the
  actor, and an absent (zero-padded) body has no actionlet at all. Scaled per body, every
  body's own maximum reached 1, so absent and idle bodies had actionlets larger than the
  actor's (README, "Actionlets of absent and idle bodies").

  Args:
    cam: (N, M, T', V) activation map.
    present: (N, M) body presence (augment.body_presence); None: every body is present.
  """
  if present is None:
    present = jnp.ones(cam.shape[:2], cam.dtype)
  inside = (present > 0)[:, :, None, None]
  axes = (1, 2, 3)
  low = jnp.min(jnp.where(inside, cam, jnp.inf), axis=axes, keepdims=True)
  high = jnp.max(jnp.where(inside, cam, -jnp.inf), axis=axes, keepdims=True)
  # A sample with no body at all (an eval batch's zero padding) gets an empty map, not NaN.
  empty = ~jnp.any(inside, axis=axes, keepdims=True)
  low, high = jnp.where(empty, 0.0, low), jnp.where(empty, 0.0, high)
  return jnp.where(inside, (cam - low) / (high - low + eps), 0.0)


def to_input_frames(mask: jax.Array, frames: int) -> jax.Array:
  """Linearly resamples (N, M, T', V) to (N, M, frames, V)."""
  n, m, _, v = mask.shape
  return jax.image.resize(mask, (n, m, frames, v), method="linear")


def actionlet(dense: jax.Array, gradient: jax.Array, smoothing: jax.Array, *, threshold: float,
              frames: int, grad_activation: str = "relu",
              present: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """The binary actionlet at the feature and at the input resolution; present (N, M) marks the
  bodies of each sample (None: all), see normalize_per_sample.

  Returns:
    (mask_dense (N, M, T', V), mask_input (N, frames, V, M)), both float {0, 1}: the
    first weighs SAFP, the second mixes MATS in the (N, C, T, V, M) data layout.
  """
  scaled = normalize_per_sample(activation_map(dense, gradient, smoothing,
                                               grad_activation=grad_activation), present)
  mask_dense = (scaled > threshold).astype(jnp.float32)
  mask_input = (to_input_frames(scaled, frames) > threshold).astype(jnp.float32)
  return mask_dense, jnp.transpose(mask_input, (0, 2, 3, 1))


def relocate(key: jax.Array, mask_dense: jax.Array,
             mask_input: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Moves each sample's actionlet to a random place: the ablation actionlet.placement=random.

  One random permutation of the joints and one random circular shift of the frames per sample,
  the same for every body and for both masks (mask_dense (N, M, T', V), mask_input
  (N, T, V, M); the input's shift is the dense shift scaled to T frames, rounded). The area, the
  temporal extent and the empty masks of absent bodies are kept; where the motion is, is lost.
  """
  n, _, dense_frames, joints = mask_dense.shape
  frames = mask_input.shape[1]
  perm_key, shift_key = jax.random.split(key)
  perms = jax.vmap(lambda k: jax.random.permutation(k, joints))(jax.random.split(perm_key, n))
  shifts = jax.random.randint(shift_key, (n,), 0, dense_frames)
  dense = jnp.take_along_axis(mask_dense, perms[:, None, None, :], axis=3)
  dense = jax.vmap(lambda m, s: jnp.roll(m, s, axis=1))(dense, shifts)
  input_shifts = jnp.round(shifts * frames / dense_frames).astype(jnp.int32)
  moved = jnp.take_along_axis(mask_input, perms[:, None, :, None], axis=2)
  moved = jax.vmap(lambda m, s: jnp.roll(m, s, axis=0))(moved, input_shifts)
  return dense, moved


def borrow(mask_dense: jax.Array, mask_input: jax.Array,
           present: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Gives each sample the next sample's actionlet (the batch's last takes the first's), kept to
  its own bodies, present (N, M): the ablation actionlet.placement=other_sample. Real actionlet
  shapes, another sample's place. Masks as in `relocate`."""
  dense = jnp.roll(mask_dense, -1, axis=0) * present[:, :, None, None]
  moved = jnp.roll(mask_input, -1, axis=0) * present[:, None, None, :]
  return dense, moved


def iou(pred: jax.Array, truth: jax.Array, eps: float = 1e-8) -> jax.Array:
  """Per-sample IoU of two boolean masks (N, ...)."""
  pred, truth = pred.astype(bool), truth.astype(bool)
  axes = tuple(range(1, pred.ndim))
  inter = jnp.sum(pred & truth, axis=axes)
  union = jnp.sum(pred | truth, axis=axes)
  return inter / (union + eps)


# The configured actionlet of a network (the step and the evaluators use these).


def smoothing_matrix(config: ml_collections.ConfigDict, layout: graph.Layout) -> jax.Array:
  """G of Eq. 5: the normalised adjacency, or the authors' body-part averaging."""
  if config.actionlet.smoothing == "adjacency":
    return jnp.asarray(layout.smoothing_matrix())
  if config.actionlet.smoothing == "parts":
    return jnp.asarray(layout.part_average_matrix())
  raise ValueError(f"Unknown config key actionlet.smoothing={config.actionlet.smoothing!r}: "
                   "adjacency or parts")


def offline_actionlet(config, model, variables, dense, anchor_z, layout, frames, present):
  """Actionlet masks (dense (N, M, T', V), input (N, T, V, M)) from offline features of an input
  whose body presence is present (N, M) (augment.body_presence)."""
  head = lambda h: model.apply(variables, stgcn.global_average_pool(h), method=model.project)
  gradient = dissimilarity_gradient(head, dense, anchor_z)
  return actionlet(dense, gradient, smoothing_matrix(config, layout),
                   threshold=config.actionlet.threshold, frames=frames,
                   grad_activation=config.actionlet.grad_activation, present=present)


def inference_actionlet(state, x: jax.Array, *, config, model, layout) -> jax.Array:
  """The actionlet (N, T, V, M) of un-augmented x (N, C, T, V, M) from the offline network of a
  train state (ema_params, ema_batch_stats, anchor) in inference mode."""
  variables = {"params": state.ema_params, "batch_stats": state.ema_batch_stats}
  anchor = state.anchor if config.actionlet.anchor == "dataset" else jnp.mean(x, axis=0)
  dense = model.apply(variables, x, train=False, method=model.encode)
  anchor_z = model.apply(variables, anchor[None], train=False)["z"][0]
  _, mask_input = offline_actionlet(config, model, variables, dense, anchor_z, layout, x.shape[2],
                                    augment.body_presence(x))
  return mask_input
