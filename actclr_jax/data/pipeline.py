"""The grain input pipeline over memory-mapped (N, C, T, V, M) arrays.

Training: one grain DataLoader per epoch, shuffled from (seed, epoch), sharded per JAX
process, batches drop the remainder, and the iterator state is checkpointable.
Evaluation: every sample once, in order, the last batch padded and masked.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator

from absl import flags
from absl import logging
import grain
import ml_collections
import numpy as np

from actclr_jax import graph
from actclr_jax.data import io, preprocess, registry, streams


@dataclasses.dataclass(frozen=True)
class SplitArrays:
  """One part (train or val) of a prepared split.

  Attributes:
    data: (N, C, T, V, M) float32, usually a read-only memory map.
    labels: (N,) int64.
    names: N sample names.
    actionlet: (N, T, V) uint8 ground-truth actionlet (synthetic data only) or None.
    path: the data file it came from.
  """
  data: np.ndarray
  labels: np.ndarray
  names: list
  actionlet: np.ndarray | None
  path: str

  def __len__(self):
    return len(self.data)


def load_split(root: str, split: str, part: str, layout: graph.Layout, *, frames: int | None = 50,
               center: bool = True, resize: bool = True, view_normalize: bool = True) -> SplitArrays:
  """Loads `{root}/{split}/{part}_*` arrays; `frames=None` reads the raw-length arrays.

  The preprocessed cache is written on first use when only the raw arrays exist.
  """
  split_dir = os.path.join(root, split)
  raw = os.path.join(split_dir, f"{part}_data.npy")
  suffix = "" if frames is None else preprocess.cache_suffix(frames, center, resize, view_normalize)
  path = os.path.join(split_dir, f"{part}_data{suffix}.npy")
  if not os.path.exists(path):
    if not os.path.exists(raw):
      raise io.DataError(
          f"{split_dir}: no prepared arrays ({part}_data.npy); prepare the data set with "
          f"`python -m actclr_jax.data.prepare` or fix config key data.root / data.split")
    logging.info("building the preprocessed cache %s", path)
    preprocess.write_cache(split_dir, part, layout, frames=frames, center=center, resize=resize,
                           view_normalize=view_normalize)
  data = preprocess.load_array(path, layout)
  names, labels = io.load_labels(os.path.join(split_dir, f"{part}_label.pkl"))
  if len(labels) != len(data):
    raise io.DataError(f"{split_dir}/{part}_label.pkl: {len(labels)} labels for {len(data)} "
                       f"samples in {path}")
  mask_path = os.path.join(split_dir, f"{part}_actionlet{suffix}.npy")
  actionlet = np.load(mask_path, mmap_mode="r") if os.path.exists(mask_path) else None
  return SplitArrays(data, labels, names, actionlet, path)


class SkeletonSource(grain.sources.RandomAccessDataSource):
  """Random access to (data (C, T, V, M), label, index) records of a SplitArrays."""

  def __init__(self, arrays: SplitArrays):
    self._arrays = arrays

  def __len__(self) -> int:
    return len(self._arrays)

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    return {"data": np.asarray(self._arrays.data[index], dtype=np.float32),
            "label": np.int32(self._arrays.labels[index]),
            "index": np.int32(index)}

  def __repr__(self) -> str:
    return f"SkeletonSource({self._arrays.path!r}, n={len(self)})"

  def __getstate__(self) -> dict:
    # Grain pickles the source into each worker process (data.worker_count > 0), and a memory
    # map pickles as its whole contents (GBs for NTU): send the file's path, reopen it there.
    # The records never read the actionlet, so it stays behind.
    arrays = self._arrays
    if _maps_whole_file(arrays.data, arrays.path):
      return {"arrays": dataclasses.replace(arrays, data=None, actionlet=None), "reopen": True}
    return {"arrays": arrays, "reopen": False}

  def __setstate__(self, state: dict):
    arrays = state["arrays"]
    if state["reopen"]:
      arrays = dataclasses.replace(arrays, data=np.load(arrays.path, mmap_mode="r"))
    self._arrays = arrays


def _maps_whole_file(data: np.ndarray, path: str) -> bool:
  """Whether `data` is a read-only memory map of all of the .npy file at `path`."""
  if not isinstance(data, np.memmap) or data.filename is None or not os.path.exists(path):
    return False
  if not os.path.samefile(data.filename, path):
    return False
  whole = np.load(path, mmap_mode="r")
  return whole.shape == data.shape and whole.dtype == data.dtype and data.mode == "r"


class ToStream(grain.transforms.Map):
  """Converts a record's joint coordinates to the joint, motion or bone stream."""

  def __init__(self, stream: str, layout: graph.Layout):
    if stream not in streams.STREAMS:
      raise ValueError(f"Unknown stream {stream!r} (config key data.stream); "
                       f"expected one of {streams.STREAMS}")
    self._stream, self._layout = stream, layout

  def map(self, record: dict) -> dict:
    return dict(record, data=streams.to_stream(record["data"], self._stream, self._layout))


def process_shard() -> tuple[int, int]:
  """(index, count) of this JAX process."""
  import jax  # pylint: disable=g-import-not-at-top
  return jax.process_index(), jax.process_count()


def steps_per_epoch(num_samples: int, global_batch_size: int) -> int:
  """Training steps in one epoch: whole global batches (the same for any number of processes,
  each of which reads its slice of every global batch)."""
  steps = num_samples // global_batch_size
  if steps == 0:
    raise ValueError(f"batch_size {global_batch_size} exceeds the {num_samples} training samples "
                     f"(config key batch_size)")
  return steps


class _EpochOrder(grain.sources.RandomAccessDataSource):
  """This process's records of one epoch, in order: record j is the (j % b)-th sample of this
  process's slice of global batch j // b, with b the per-process batch."""

  def __init__(self, source: SkeletonSource, keys: np.ndarray):
    self._source, self._keys = source, keys

  def __len__(self) -> int:
    return len(self._keys)

  def __getitem__(self, index: int) -> dict:
    return self._source[int(self._keys[index])]


def epoch_keys(num_samples: int, *, global_batch_size: int, epoch: int, seed: int,
               shard: tuple[int, int] = (0, 1)) -> np.ndarray:
  """The sample indices this process reads in one epoch, (steps * per-process batch,).

  The epoch's permutation comes from (seed, epoch) alone; global batch i is its slice
  [i * B, (i + 1) * B) and process p reads the p-th part of each, so that the global batches,
  and therefore training, do not depend on the number of processes.
  """
  shard_index, shard_count = shard
  if global_batch_size % shard_count:
    raise ValueError(f"batch_size {global_batch_size} is not divisible by the {shard_count} "
                     f"processes (config key batch_size)")
  local = global_batch_size // shard_count
  steps = steps_per_epoch(num_samples, global_batch_size)
  order = grain.MapDataset.range(num_samples).shuffle(seed=_epoch_seed(seed, epoch))
  j = np.arange(steps * local)
  positions = (j // local) * global_batch_size + shard_index * local + j % local
  return np.asarray([order[int(p)] for p in positions], np.int64)


def train_loader(arrays: SplitArrays, *, global_batch_size: int, epoch: int, seed: int,
                 stream: str, layout: graph.Layout, shard: tuple[int, int] = (0, 1),
                 worker_count: int = 0) -> grain.IterDataset:
  """One epoch of this process's batches, shuffled from (seed, epoch) (see epoch_keys).

  Yields {'data': (B, C, T, V, M), 'label': (B,), 'index': (B,)} with B the per-process batch;
  its iterator's position is checkpointable (grain.checkpoint). worker_count > 0 reads and
  converts records in that many worker processes.
  """
  keys = epoch_keys(len(arrays), global_batch_size=global_batch_size, epoch=epoch, seed=seed,
                    shard=shard)
  dataset = (grain.MapDataset.source(_EpochOrder(SkeletonSource(arrays), keys))
             .map(ToStream(stream, layout))
             .batch(global_batch_size // shard[1], drop_remainder=True)
             .to_iter_dataset())
  if worker_count > 0:
    if not flags.FLAGS.is_parsed():
      # Grain's workers read its absl flags; outside an absl app (a notebook, a test) nothing
      # has parsed them, so take their defaults rather than fail.
      flags.FLAGS.mark_as_parsed()
    dataset = dataset.mp_prefetch(grain.multiprocessing.MultiprocessingOptions(
        num_workers=worker_count))
  return dataset


def _epoch_seed(seed: int, epoch: int) -> int:
  return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] % (2**31 - 1))


def eval_batches(arrays: SplitArrays, *, batch_size: int, stream: str, layout: graph.Layout,
                 shard: tuple[int, int] = (0, 1)) -> Iterator[dict]:
  """Every sample of this process's shard once, in order.

  Yields {'data', 'label', 'index', 'mask'}; the last batch is zero-padded to
  `batch_size` and `mask` (B,) bool marks the real samples.
  """
  shard_index, shard_count = shard
  dataset = (grain.MapDataset.source(SkeletonSource(arrays))[shard_index::shard_count]
             .map(ToStream(stream, layout))
             .batch(batch_size, drop_remainder=False))
  for batch in dataset:
    n = len(batch["label"])
    batch["mask"] = np.arange(batch_size) < n
    if n < batch_size:
      batch = {k: v if k == "mask" else _pad(v, batch_size) for k, v in batch.items()}
    yield batch


def _pad(array: np.ndarray, size: int) -> np.ndarray:
  return np.concatenate([array, np.zeros((size - len(array),) + array.shape[1:], array.dtype)])


def mean_sequence(arrays: SplitArrays, *, stream: str, layout: graph.Layout,
                  chunk: int = 1024) -> np.ndarray:
  """The static anchor of Eq. 2: the training set's average sequence, (C, T, V, M) float32."""
  total = np.zeros(arrays.data.shape[1:], dtype=np.float64)
  for start in range(0, len(arrays), chunk):
    block = np.asarray(arrays.data[start:start + chunk], dtype=np.float64)
    total += streams.to_stream(block, stream, layout).sum(axis=0)
  return (total / len(arrays)).astype(np.float32)


@dataclasses.dataclass
class Data:
  """The splits a run reads, and how they are batched."""
  layout: graph.Layout
  train: SplitArrays
  val: SplitArrays
  shard: tuple[int, int]
  steps_per_epoch: int


def prepare_synthetic_if_missing(config: ml_collections.ConfigDict) -> None:
  """Writes a generated data set (the registry's `generated`, e.g. synthetic) at data.root
  when it is not there yet, with config keys data.synthetic_samples and data.synthetic_seed."""
  dataset = registry.get(config.data.dataset)
  if not dataset.generated:
    return
  if os.path.exists(os.path.join(config.data.root, config.data.split, "train_label.pkl")):
    return
  logging.info("generating the %s data set in %s", dataset.name, config.data.root)
  dataset.prepare_function()(out_dir=config.data.root, num_samples=config.data.synthetic_samples,
                             seed=config.data.synthetic_seed)
  from actclr_jax.data.prepare import synthetic  # pylint: disable=g-import-not-at-top
  logging.info("%s", synthetic.summarize(config.data.root))


def load_data(config: ml_collections.ConfigDict) -> Data:
  """Loads and checks the train and val splits named by the config."""
  layout = graph.get_layout(config.data.layout)
  prepare_synthetic_if_missing(config)
  kwargs = dict(frames=config.data.frames, center=config.data.center, resize=config.data.resize,
                view_normalize=config.data.view_normalize)
  train = load_split(config.data.root, config.data.split, config.data.train_part, layout,
                     **kwargs)
  val = load_split(config.data.root, config.data.split, config.data.val_part, layout, **kwargs)
  for arrays in (train, val):
    if arrays.labels.max(initial=0) >= config.data.num_classes:
      raise io.DataError(f"{arrays.path}: label {arrays.labels.max()} >= config key "
                         f"data.num_classes={config.data.num_classes}")
  shard = process_shard()
  spe = steps_per_epoch(len(train), config.batch_size)
  return Data(layout, train, val, shard, spe)
