"""Weighted k-nearest-neighbour classification on frozen features (InstDisc / MoCo style).

Features are L2-normalised, similarity is cosine, and each of the k nearest training
samples votes for its class with weight exp(sim / temperature). Test samples are
processed in fixed-size chunks so memory stays at chunk_size x N_train similarities.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

_EPS = 1e-12


def _check_inputs(train_features, train_labels, test_features, num_classes):
  train_features = np.asarray(train_features, dtype=np.float32)
  test_features = np.asarray(test_features, dtype=np.float32)
  train_labels = np.asarray(train_labels)
  if train_features.ndim != 2 or test_features.ndim != 2:
    raise ValueError(f"features must be (N, D); got train {train_features.shape}, "
                     f"test {test_features.shape}")
  if train_features.shape[1] != test_features.shape[1]:
    raise ValueError(f"feature sizes differ: train {train_features.shape[1]}, "
                     f"test {test_features.shape[1]}")
  if train_labels.shape != (train_features.shape[0],):
    raise ValueError(f"train_labels: expected shape ({train_features.shape[0]},), "
                     f"got {train_labels.shape}")
  if train_features.shape[0] == 0:
    raise ValueError("kNN needs at least one training sample")
  for name, x in (("train_features", train_features), ("test_features", test_features)):
    if not np.all(np.isfinite(x)):
      raise ValueError(f"{name}: contains NaN or inf")
  train_labels = train_labels.astype(np.int64)
  if train_labels.min() < 0:
    raise ValueError(f"train_labels: negative class id {train_labels.min()}")
  if num_classes is None:
    num_classes = int(train_labels.max()) + 1
  elif train_labels.max() >= num_classes:
    raise ValueError(f"train_labels: class id {train_labels.max()} >= num_classes {num_classes}")
  return train_features, train_labels.astype(np.int32), test_features, int(num_classes)


def _normalize(x: jax.Array) -> jax.Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), _EPS)


@functools.partial(jax.jit, static_argnames=("ks", "num_classes"))
def _predict_chunk(test, train, train_labels, temperature, *, ks, num_classes):
  """(len(ks), B) predictions of a chunk of test features (B, D) against train (N, D)."""
  sim = _normalize(test) @ train.T
  top_sim, top_idx = jax.lax.top_k(sim, max(ks))
  weights = jnp.exp(top_sim / temperature)
  votes = jax.nn.one_hot(train_labels[top_idx], num_classes, dtype=jnp.float32)
  # Prefix sums over the neighbours give the votes of every k from one top-k call.
  scores = jnp.cumsum(votes * weights[..., None], axis=1)
  return jnp.stack([jnp.argmax(scores[:, k - 1], axis=-1) for k in ks])


def knn_predict_multi(train_features, train_labels, test_features, *,
                      ks: Sequence[int] = (10, 20, 40), temperature: float = 0.1,
                      num_classes: int | None = None,
                      chunk_size: int = 1024) -> dict[int, np.ndarray]:
  """Weighted-kNN predictions for several k at once.

  Args:
    train_features: (N_train, D) features of the labelled set.
    train_labels: (N_train,) integer class ids.
    test_features: (N_test, D) features to classify.
    ks: neighbour counts; a k above N_train uses all N_train samples.
    temperature: vote weight is exp(cosine / temperature).
    num_classes: number of classes; defaults to max(train_labels) + 1.
    chunk_size: test samples per jitted call (bounds memory to chunk_size x N_train).

  Returns:
    {k: (N_test,) int64 predicted class ids}. Ties go to the lower class id.
  """
  if not ks or min(ks) < 1:
    raise ValueError(f"ks must be positive neighbour counts, got {ks}")
  if temperature <= 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  train_np, labels_np, test_np, num_classes = _check_inputs(
      train_features, train_labels, test_features, num_classes)
  n_train, n_test = len(train_np), len(test_np)
  effective = tuple(sorted({min(int(k), n_train) for k in ks}))
  train = _normalize(jnp.asarray(train_np))
  labels = jnp.asarray(labels_np)
  chunk = max(1, min(int(chunk_size), n_test))
  outputs = []
  for start in range(0, n_test, chunk):
    block = test_np[start:start + chunk]
    valid = len(block)
    if valid < chunk:  # pad so that every call reuses one compiled shape
      block = np.concatenate([block, np.zeros((chunk - valid, block.shape[1]), np.float32)])
    preds = _predict_chunk(jnp.asarray(block), train, labels, jnp.float32(temperature),
                           ks=effective, num_classes=num_classes)
    outputs.append(np.asarray(preds)[:, :valid])
  stacked = (np.concatenate(outputs, axis=1) if outputs
             else np.zeros((len(effective), 0), np.int64)).astype(np.int64)
  by_effective = dict(zip(effective, stacked))
  return {int(k): by_effective[min(int(k), n_train)] for k in ks}


def knn_predict(train_features, train_labels, test_features, *, k: int = 20,
                temperature: float = 0.1, num_classes: int | None = None,
                chunk_size: int = 1024) -> np.ndarray:
  """(N_test,) weighted-kNN predicted class ids; see `knn_predict_multi`."""
  return knn_predict_multi(train_features, train_labels, test_features, ks=(k,),
                           temperature=temperature, num_classes=num_classes,
                           chunk_size=chunk_size)[int(k)]


def knn_accuracy(train_features, train_labels, test_features, test_labels, *,
                 ks: Sequence[int] = (10, 20, 40), temperature: float = 0.1,
                 num_classes: int | None = None, chunk_size: int = 1024) -> dict[int, float]:
  """{k: top-1 accuracy in percent} of weighted kNN; see `knn_predict_multi`."""
  test_labels = np.asarray(test_labels)
  if test_labels.shape != (np.shape(test_features)[0],):
    raise ValueError(f"test_labels: expected shape ({np.shape(test_features)[0]},), "
                     f"got {test_labels.shape}")
  if test_labels.size == 0:
    raise ValueError("knn_accuracy: no test samples")
  preds = knn_predict_multi(train_features, train_labels, test_features, ks=ks,
                            temperature=temperature, num_classes=num_classes,
                            chunk_size=chunk_size)
  return {k: float(100.0 * np.mean(p == test_labels)) for k, p in preds.items()}


def standardize(train_x: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
  """Features minus the train mean, over the train std (dimensions with std <= 1e-8 kept).

  A frozen, affine-free BatchNorm in front of the linear layer (the MAE linear probe), and the
  same transform before KNN. Off by default (config key eval.features.standardize), as in the
  ActCLR family's protocol; it matters when the features barely vary between samples, e.g. for
  a randomly initialised encoder, whose features have pairwise cosine ~0.999.
  """
  mean = train_x.mean(0)
  std = train_x.std(0)
  std = np.where(std > 1e-8, std, 1.0)
  return tuple(((x - mean) / std).astype(np.float32) for x in (train_x,) + others)
