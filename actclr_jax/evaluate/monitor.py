"""The pretraining monitor: the knn evaluator on a live train state, and the actionlet's IoU
with the ground truth."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from actclr_jax import actionlet, parallel
from actclr_jax.data import pipeline, streams
from actclr_jax.evaluate import evaluators, features, knn, pretrained


def effective_rank(features: np.ndarray) -> float:
  """exp(entropy) of the normalised singular-value energy of (N, D) features: about the number
  of dimensions the features really use (1 when they have collapsed onto a line)."""
  singular = np.linalg.svd(np.asarray(features, np.float64), compute_uv=False)
  energy = singular ** 2 / max(np.sum(singular ** 2), 1e-30)
  return float(np.exp(-np.sum(energy * np.log(energy + 1e-30))))


class Monitor:
  """What the trainer logs every config.knn_every_epochs: `evaluators.Knn.accuracy` (config
  group eval.knn) of the encoder in inference mode (the online one, or the offline one with
  eval.features.network=offline), on raw and on standardised features,
  and, where the data set has a ground-truth actionlet (synthetic), the IoU of the offline
  network's actionlet with it. Jitted once.

  `monitor(state)` of a train state (params, batch_stats, ema_params, ema_batch_stats, anchor)
  returns {knn_top1_k{k}, knn_standardized_top1_k{k} for k in eval.knn.ks,
  feature_effective_rank, and actionlet_iou, random_mask_iou, actionlet_area,
  actionlet_all_zero, actionlet_all_one where there is a truth}; `monitor(state,
  recalibrate=True)` adds knn_recalibrated_top1_k{k}: raw features of that network with
  its BatchNorm statistics re-estimated on clean training data (the comparison's bn_recal
  protocol); `monitor(state, with_knn=False)` returns the actionlet's entries only (empty without a
  truth), without extracting any feature.
  """

  def __init__(self, config, model, data: pipeline.Data, sharding,
               max_actionlet_samples: int = 512):
    pretrained.check_network(config.eval.features.network)
    self._config, self._data, self._sharding = config, data, sharding
    self._multi_process = jax.process_count() > 1
    if self._multi_process:
      # Every process evaluates the whole splits on its own devices, as the evaluation modes
      # do, from a host copy of the replicated state: the KNN needs every feature in one place.
      self._data = dataclasses.replace(data, shard=(0, 1))
      self._sharding = parallel.local_batch_sharding()
    self._knn = evaluators.get("knn")
    self._encode = features.feature_fn(model, config.eval.knn.feature)
    self._actionlet = jax.jit(functools.partial(actionlet.inference_actionlet, config=config,
                                                model=model, layout=data.layout))
    n = min(max_actionlet_samples, len(data.val))
    self._num_actionlet = n - n % self._sharding.mesh.devices.size

  @property
  def has_truth(self) -> bool:
    """Whether the validation split has a ground-truth actionlet to score."""
    return self._data.val.actionlet is not None

  def __call__(self, state, recalibrate: bool = False, with_knn: bool = True) -> dict:
    if not with_knn:
      return self.actionlet_iou(state) if self.has_truth else {}
    config, data = self._config, self._data
    if self._multi_process:
      state = pretrained.Pretrained(*(jax.tree.map(np.asarray, tree) for tree in (
          state.params, state.batch_stats, state.ema_params, state.ema_batch_stats,
          state.anchor)))
    params, batch_stats = pretrained.network_variables(state, config.eval.features.network)
    variables = {"params": params, "batch_stats": batch_stats}
    encode = lambda x: self._encode(variables, x)
    train_x = features.extract_features(encode, data.train, data, config, self._sharding)
    val_x = features.extract_features(encode, data.val, data, config, self._sharding)
    result = {f"knn_{k}": v for k, v in self._knn.accuracy(
        config, train_x, val_x, data, standardize=False).items()}
    # The same on features standardised by the training set's mean and std: the untrained
    # network's raw features are nearly constant, and this baseline is the fair one.
    result.update({f"knn_standardized_{k}": v for k, v in self._knn.accuracy(
        config, train_x, val_x, data, standardize=True).items()})
    result["feature_effective_rank"] = effective_rank(knn.standardize(train_x)[0])
    if recalibrate:
      # The untrained network's init statistics (mean 0, var 1) leave its BatchNorm layers
      # as identities, a function no trained network computes: this is the other fair baseline.
      stats = features.recalibrated_batch_stats(params, batch_stats, data, config)
      recalibrated = {"params": params, "batch_stats": stats}
      encode = lambda x: self._encode(recalibrated, x)
      result.update({f"knn_recalibrated_{k}": v for k, v in self._knn.accuracy(
          config, features.extract_features(encode, data.train, data, config, self._sharding),
          features.extract_features(encode, data.val, data, config, self._sharding), data,
          standardize=False).items()})
    if self.has_truth:
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
