"""The pretraining monitor: KNN of the online encoder and the actionlet's IoU with the truth."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from actclr_jax import actionlet, parallel
from actclr_jax.data import pipeline, streams
from actclr_jax.evaluate import knn
from actclr_jax.models import builder


def extract_features(encode, arrays: pipeline.SplitArrays, data: pipeline.Data, config, sharding):
  """Pooled features (N, C) of every sample of `arrays`, in order."""
  chunks = []
  for batch in pipeline.eval_batches(arrays, batch_size=config.eval_batch_size // data.shard[1],
                                     stream=config.data.stream, layout=data.layout,
                                     shard=data.shard):
    mask = batch.pop("mask")
    features = encode(parallel.to_global({"data": batch["data"]}, sharding)["data"])
    chunks.append(np.asarray(jax.device_get(features))[mask])
  return np.concatenate(chunks)


def effective_rank(features: np.ndarray) -> float:
  """exp(entropy) of the normalised singular-value energy of (N, D) features: about the number
  of dimensions the features really use (1 when they have collapsed onto a line)."""
  singular = np.linalg.svd(np.asarray(features, np.float64), compute_uv=False)
  energy = singular ** 2 / max(np.sum(singular ** 2), 1e-30)
  return float(np.exp(-np.sum(energy * np.log(energy + 1e-30))))


class Monitor:
  """KNN top-1 of the online encoder (inference mode) and, where the data set has a ground-truth
  actionlet (synthetic), the IoU of the offline network's actionlet with it. Jitted once."""

  def __init__(self, config, model, data: pipeline.Data, sharding, max_actionlet_samples: int = 512):
    self._config, self._data, self._sharding = config, data, sharding
    self._encode = jax.jit(functools.partial(builder.encode_features, model=model))
    self._actionlet = jax.jit(functools.partial(actionlet.inference_actionlet, config=config,
                                                model=model, layout=data.layout))
    n = min(max_actionlet_samples, len(data.val))
    self._num_actionlet = n - n % jax.device_count()

  def __call__(self, state) -> dict:
    config, data = self._config, self._data
    encode = lambda x: self._encode(state.params, state.batch_stats, x)
    train_features = extract_features(encode, data.train, data, config, self._sharding)
    val_features = extract_features(encode, data.val, data, config, self._sharding)
    accuracy = knn.knn_accuracy(train_features, data.train.labels, val_features, data.val.labels,
                                ks=(config.knn_k,), num_classes=config.data.num_classes)
    result = {f"knn_top1_k{config.knn_k}": float(accuracy[config.knn_k])}
    # The same on features standardised by the training set's mean and std: the untrained
    # network's raw features are nearly constant, and this baseline is the fair one.
    train_std, val_std = knn.standardize(train_features, val_features)
    accuracy = knn.knn_accuracy(train_std, data.train.labels, val_std, data.val.labels,
                                ks=(config.knn_k,), num_classes=config.data.num_classes)
    result[f"knn_standardized_top1_k{config.knn_k}"] = float(accuracy[config.knn_k])
    result["feature_effective_rank"] = effective_rank(train_std)
    if data.val.actionlet is not None:
      result.update(self.actionlet_iou(state))
    return result

  def actionlet_iou(self, state, seed: int = 0) -> dict:
    """IoU of body 0's actionlet with the ground truth, and that of a same-area random mask."""
    n, data = self._num_actionlet, self._data
    x = streams.to_stream(np.asarray(data.val.data[:n]), self._config.data.stream, data.layout)
    x = jax.device_put(jnp.asarray(x), self._sharding)
    predicted = np.asarray(self._actionlet(state, x))[..., 0] > 0.5  # (n, T, V), body 0
    truth = np.asarray(data.val.actionlet[:n]) > 0
    rng = np.random.default_rng(seed)
    shuffled = np.stack([rng.permutation(p.ravel()).reshape(p.shape) for p in predicted])
    return {"actionlet_iou": float(np.mean(actionlet.iou(predicted, truth))),
            "random_mask_iou": float(np.mean(actionlet.iou(shuffled, truth))),
            "actionlet_area": float(predicted.mean()),
            "actionlet_all_zero": float(np.mean(~predicted.any(axis=(1, 2)))),
            "actionlet_all_one": float(np.mean(predicted.all(axis=(1, 2))))}
