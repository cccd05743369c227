"""Frozen-encoder features for the evaluators and the pretraining monitor.

Which network: the online (query) encoder, or the offline (momentum) one with
eval.features.network=offline, with its BatchNorm statistics, in inference mode (optionally
recalibrated on clean data, config group eval.features). Evaluation reads every
split on this process's local devices; the monitor reads its process's shard of the data.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Callable

from absl import logging
import jax
import ml_collections
import numpy as np

from actclr_jax import parallel
from actclr_jax.data import io, pipeline, streams
from actclr_jax.evaluate import bn_recalibration, knn
from actclr_jax.evaluate.pretrained import Pretrained, network_suffix
from actclr_jax.models import builder, stgcn

FEATURES = {"encoder": "feature", "projector": "z"}  # config value -> ContrastiveNet output


def check_classes(train: pipeline.SplitArrays, val: pipeline.SplitArrays) -> None:
  """Raises a DataError naming the val classes the train split lacks."""
  missing = sorted(set(np.unique(val.labels).tolist()) - set(np.unique(train.labels).tolist()))
  if missing:
    raise io.DataError(f"{val.path}: val class(es) {missing} have no training sample in "
                       f"{train.path}; a classifier trained on this split cannot predict them")


def load_eval_data(config: ml_collections.ConfigDict) -> pipeline.Data:
  """The train and val splits of the config, unsharded (every process reads all of them)."""
  data = pipeline.load_data(config)
  check_classes(data.train, data.val)
  return dataclasses.replace(data, shard=(0, 1))


def extract_features(encode: Callable[[jax.Array], jax.Array], arrays: pipeline.SplitArrays,
                     data: pipeline.Data, config, sharding) -> np.ndarray:
  """encode(x) of every sample of this process's shard of `arrays`, in order: (N, D).

  x is a global (B, C, T, V, M) batch of config.eval_batch_size samples sharded by `sharding`;
  the zero padding of the last batch is dropped.
  """
  chunks = []
  for batch in pipeline.eval_batches(arrays, batch_size=config.eval_batch_size // data.shard[1],
                                     stream=config.data.stream, layout=data.layout,
                                     shard=data.shard):
    mask = batch.pop("mask")
    features = encode(parallel.to_global({"data": batch["data"]}, sharding)["data"])
    chunks.append(np.asarray(jax.device_get(features))[mask])
  return np.concatenate(chunks)


# Cached per (model, feature), so that evaluators run one after another in a process (the tests,
# a notebook, the monitor) compile it once.
@functools.lru_cache(maxsize=16)
def feature_fn(model: stgcn.ContrastiveNet, feature: str = "encoder"):
  """Jitted (variables, x (N, C, T, V, M)) -> (N, D) features in inference mode: the pooled
  encoder output (feature='encoder') or the projector's z ('projector')."""
  if feature not in FEATURES:
    raise ValueError(f"config key eval.knn.feature={feature!r}: expected one of "
                     f"{sorted(FEATURES)}")
  key = FEATURES[feature]
  return jax.jit(lambda v, x: model.apply(v, x, train=False)[key])


def encoder_features(pre: Pretrained, arrays: pipeline.SplitArrays, data: pipeline.Data,
                     config, feature: str = "encoder") -> np.ndarray:
  """(N, D) features of every sample of `arrays` from the restored network (`pre.variables`)."""
  apply = feature_fn(builder.build_model(config), feature)
  variables = pre.variables
  return extract_features(lambda x: apply(variables, x), arrays, data, config,
                          parallel.local_batch_sharding())


def recalibrated_batch_stats(params, batch_stats, data: pipeline.Data, config):
  """The evaluated network's BatchNorm statistics re-estimated on clean training data
  (bn_recalibration.py): batches of eval.features.bn_recalibration_batch_size samples in a
  fixed random order (seed 0), the remainder dropped; only the layers of
  eval.features.bn_recalibration_layers (all | data_bn | blocks) take the new statistics."""
  layers = config.eval.features.bn_recalibration_layers
  bn_recalibration.check_layers(layers)  # before the forward passes, not after them
  train = data.train
  size = min(int(config.eval.features.bn_recalibration_batch_size), len(train))
  order = np.random.default_rng(0).permutation(len(train))
  batches = (streams.to_stream(np.asarray(train.data[np.sort(order[s:s + size])], np.float32),
                               config.data.stream, data.layout)
             for s in range(0, len(train) - size + 1, size))
  recalibrated = bn_recalibration.recalibrate(builder.build_model(config), params, batch_stats,
                                              batches)
  return bn_recalibration.select_layers(batch_stats, recalibrated, layers)


def recalibrated(pre: Pretrained, data: pipeline.Data, config) -> Pretrained:
  """`pre` with its evaluated network's BatchNorm statistics re-estimated on clean training
  data when config key eval.features.bn_recalibration is set (recalibrated_batch_stats), else
  `pre` itself."""
  if not config.eval.features.bn_recalibration:
    return pre
  return pre.replace(batch_stats=recalibrated_batch_stats(pre.params, pre.batch_stats, data,
                                                          config))


def standardized(config, train_x: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
  """The features as given, or standardised by train_x's statistics when config key
  eval.features.standardize is set (knn.standardize)."""
  if config.eval.features.standardize:
    return knn.standardize(train_x, *others)
  return (train_x,) + others


def _cache_tag(config) -> str:
  tag = (f"{config.data.dataset}_{config.data.split}_{config.data.stream}_t{config.data.frames}"
         + network_suffix(config.eval.features.network))
  if not config.eval.features.bn_recalibration:
    return tag
  layers = config.eval.features.bn_recalibration_layers
  return tag + "_bnrecal" + ("" if layers == "all" else f"_{layers}")


def cached_features(pre: Pretrained, data: pipeline.Data, config, workdir: str) -> dict:
  """Train and val encoder features, cached in `{workdir}/eval/features_step{N}_{tag}.npz`.

  Returns {'train_x' (N, D), 'train_y' (N,), 'val_x' (M, D), 'val_y' (M,)}. The cache records
  the checkpoint and data files it came from and is rebuilt when they differ.
  """
  path = os.path.join(workdir, "eval", f"features_step{pre.step}_{_cache_tag(config)}.npz")
  source = {"checkpoint": os.path.abspath(pre.path), "train": os.path.abspath(data.train.path),
            "val": os.path.abspath(data.val.path)}
  if os.path.exists(path):
    with np.load(path) as cache:
      cached = {k: cache[k] for k in cache.files}
    if (json.loads(str(cached.get("source", "{}"))) == source
        and len(cached["train_x"]) == len(data.train) and len(cached["val_x"]) == len(data.val)):
      logging.info("features from the cache %s", path)
      return cached
    logging.info("the feature cache %s is for another checkpoint or data; rebuilding", path)
  features = {
      "train_x": encoder_features(pre, data.train, data, config),
      "train_y": np.asarray(data.train.labels, np.int64),
      "val_x": encoder_features(pre, data.val, data, config),
      "val_y": np.asarray(data.val.labels, np.int64),
  }
  if jax.process_index() == 0:
    with io.atomic_path(path) as tmp:
      with open(tmp, "wb") as f:
        np.savez(f, source=json.dumps(source), **features)
  return features
