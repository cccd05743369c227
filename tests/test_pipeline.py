"""The 50-frame preprocessing, streams, and the grain pipeline."""

import dataclasses
import os
import pickle

import numpy as np
import pytest

from actclr_jax import graph
from actclr_jax.data import io, pipeline, preprocess, streams
from actclr_jax.data.prepare import writer

LAYOUT = graph.NTU


def _write(root, n, *, frames=50, split="xsub", part="train", seed=0, raw=False):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 3, frames, 25, 2)).astype(np.float32)
  x[..., 1] = 0
  writer.write_split(os.path.join(root, split), part, x, [f"s{i}" for i in range(n)],
                     rng.integers(0, 5, n), x.shape[1:])
  if not raw:
    os.replace(os.path.join(root, split, f"{part}_data.npy"),
               os.path.join(root, split, f"{part}_data_t50.npy"))
  return x


def _epoch_indices(arrays, batch, epoch, seed, shard=(0, 1)):
  loader = pipeline.train_loader(arrays, global_batch_size=batch, epoch=epoch, seed=seed,
                                 stream="joint", layout=LAYOUT, shard=shard)
  return [b["index"] for b in loader]


def test_one_epoch_visits_every_sample_once(tmp_path):
  _write(tmp_path, 40)
  arrays = pipeline.load_split(str(tmp_path), "xsub", "train", LAYOUT)
  batches = _epoch_indices(arrays, 8, epoch=0, seed=0)
  assert len(batches) == 5 and all(b.shape == (8,) for b in batches)
  assert sorted(np.concatenate(batches)) == list(range(40))


def test_remainder_is_dropped_without_repeats(tmp_path):
  _write(tmp_path, 37)
  arrays = pipeline.load_split(str(tmp_path), "xsub", "train", LAYOUT)
  visited = np.concatenate(_epoch_indices(arrays, 8, epoch=0, seed=0))
  assert len(visited) == 32 == len(set(visited.tolist()))
  assert pipeline.steps_per_epoch(37, 8) == 4


def test_seeds_and_epochs_give_different_orders(tmp_path):
  _write(tmp_path, 40)
  arrays = pipeline.load_split(str(tmp_path), "xsub", "train", LAYOUT)
  order = lambda **kw: np.concatenate(_epoch_indices(arrays, 8, **kw))
  np.testing.assert_array_equal(order(epoch=0, seed=0), order(epoch=0, seed=0))
  assert not np.array_equal(order(epoch=0, seed=0), order(epoch=0, seed=1))
  assert not np.array_equal(order(epoch=0, seed=0), order(epoch=1, seed=0))


def test_restored_iterator_continues_where_it_stopped(tmp_path):
  x = _write(tmp_path, 40)
  arrays = pipeline.load_split(str(tmp_path), "xsub", "train", LAYOUT)
  make = lambda: iter(pipeline.train_loader(arrays, global_batch_size=8, epoch=3, seed=7,
                                            stream="joint", layout=LAYOUT))
  first = make()
  next(first), next(first)
  state = first.get_state()
  expected = [b for b in first]
  resumed = make()
  resumed.set_state(state)
  got = [b for b in resumed]
  assert len(got) == len(expected) == 3
  for a, b in zip(got, expected):
    np.testing.assert_array_equal(a["index"], b["index"])
    np.testing.assert_array_equal(a["data"], b["data"])
    np.testing.assert_array_equal(a["data"], x[a["index"]])


def test_source_pickles_its_memory_map_as_the_file_path(tmp_path):
  """Grain worker processes get a pickled source: a memory-mapped split travels as its path
  (under 4 KB here, not the 1.9 MB array) and reads the same records on the other side; an
  in-memory array still travels whole."""
  x = _write(tmp_path, 64)
  arrays = pipeline.load_split(str(tmp_path), "xsub", "train", LAYOUT)
  source = pipeline.SkeletonSource(arrays)
  payload = pickle.dumps(source)
  assert len(payload) < 4096 < x.nbytes, len(payload)
  copy = pickle.loads(payload)
  assert isinstance(copy._arrays.data, np.memmap)
  for i in (0, 17, 63):
    for key, value in source[i].items():
      np.testing.assert_array_equal(copy[i][key], value)
  np.testing.assert_array_equal(copy[5]["data"], x[5])
  in_memory = pipeline.SkeletonSource(dataclasses.replace(arrays, data=np.array(arrays.data)))
  assert len(pickle.dumps(in_memory)) > x.nbytes
  np.testing.assert_array_equal(pickle.loads(pickle.dumps(in_memory))[3]["data"], x[3])


def test_worker_processes_yield_the_same_batches(tmp_path):
  _write(tmp_path, 48)
  arrays = pipeline.load_split(str(tmp_path), "xsub", "train", LAYOUT)
  loader = lambda workers: pipeline.train_loader(arrays, global_batch_size=8, epoch=1, seed=3,
                                                 stream="joint", layout=LAYOUT,
                                                 worker_count=workers)
  for a, b in zip(loader(0), loader(2), strict=True):
    for key in ("data", "label", "index"):
      np.testing.assert_array_equal(a[key], b[key])


def test_process_shards_are_disjoint(tmp_path):
  _write(tmp_path, 40)
  arrays = pipeline.load_split(str(tmp_path), "xsub", "train", LAYOUT)
  shard0 = np.concatenate(_epoch_indices(arrays, 8, epoch=0, seed=0, shard=(0, 2)))
  shard1 = np.concatenate(_epoch_indices(arrays, 8, epoch=0, seed=0, shard=(1, 2)))
  assert len(shard0) == len(shard1) == 20
  assert not set(shard0.tolist()) & set(shard1.tolist())


def test_eval_keeps_every_sample_with_padding_mask(tmp_path):
  x = _write(tmp_path, 37, part="val")
  arrays = pipeline.load_split(str(tmp_path), "xsub", "val", LAYOUT)
  batches = list(pipeline.eval_batches(arrays, batch_size=16, stream="bone", layout=LAYOUT))
  assert [b["data"].shape[0] for b in batches] == [16, 16, 16]
  mask = np.concatenate([b["mask"] for b in batches])
  assert mask.sum() == 37 and not mask[37:].any()
  index = np.concatenate([b["index"] for b in batches])[mask]
  np.testing.assert_array_equal(index, np.arange(37))
  data = np.concatenate([b["data"] for b in batches])[mask]
  np.testing.assert_allclose(data, streams.bone(x, LAYOUT), rtol=1e-6)
  assert not np.concatenate([b["data"] for b in batches])[~mask].any()


def test_streams():
  x = np.random.default_rng(0).normal(size=(2, 3, 10, 25, 2)).astype(np.float32)
  m = streams.to_stream(x, "motion", LAYOUT)
  np.testing.assert_allclose(m[:, :, 3], x[:, :, 4] - x[:, :, 3])
  assert not m[:, :, -1].any()
  b = streams.to_stream(x, "bone", LAYOUT)
  assert not b[:, :, :, LAYOUT.center].any()
  np.testing.assert_allclose(b[:, :, :, 3], x[:, :, :, 3] - x[:, :, :, 2])  # head - neck
  with pytest.raises(ValueError, match="data.stream"):
    streams.to_stream(x, "velocity", LAYOUT)


def test_mean_sequence_is_the_dataset_average(tmp_path):
  x = _write(tmp_path, 30)
  arrays = pipeline.load_split(str(tmp_path), "xsub", "train", LAYOUT)
  anchor = pipeline.mean_sequence(arrays, stream="joint", layout=LAYOUT, chunk=7)
  np.testing.assert_allclose(anchor, x.mean(0), atol=1e-6)


def test_preprocessing_centres_resizes_and_normalises_view():
  rng = np.random.default_rng(0)
  seq = np.zeros((3, 300, 25, 2), np.float32)
  seq[:, :80, :, 0] = rng.normal(size=(3, 80, 25)) + np.array([1.0, 0.5, 3.0])[:, None, None]
  out = preprocess.preprocess_sequence(seq, LAYOUT)
  assert out.shape == (3, 50, 25, 2)
  assert np.abs(out[:, :, LAYOUT.center, 0]).max() < 1e-6
  left, right = LAYOUT.shoulders
  shoulder = (out[:, :, right, 0] - out[:, :, left, 0]).mean(axis=1)
  assert shoulder[0] > 0 and abs(shoulder[2]) < 1e-5
  assert not out[..., 1].any()  # an absent body stays absent
  # Resizing keeps the end points of the valid frames (before rotation, y is untouched).
  plain = preprocess.preprocess_sequence(seq, LAYOUT, view_normalize=False)
  centred = seq[:, :80, :, 0] - seq[:, :80, LAYOUT.center:LAYOUT.center + 1, 0]
  np.testing.assert_allclose(plain[:, 0, :, 0], centred[:, 0], atol=1e-5)
  np.testing.assert_allclose(plain[:, -1, :, 0], centred[:, -1], atol=1e-5)


def test_preprocessing_resamples_the_actionlet_mask():
  seq = np.ones((3, 100, 25, 1), np.float32)
  seq[:, 60:] = 0
  mask = np.zeros((100, 25), np.uint8)
  mask[30:60, 4] = 1  # the second half of the 60 valid frames
  _, out = preprocess.preprocess_sequence(seq, LAYOUT, mask=mask)
  assert out.shape == (50, 25)
  assert out[:, 4].sum() == pytest.approx(25, abs=1) and out[-1, 4] == 1 and out[0, 4] == 0
  assert out[:, 5].sum() == 0


def test_cache_is_built_from_raw_arrays_and_reused(tmp_path):
  _write(tmp_path, 6, frames=120, raw=True)
  arrays = pipeline.load_split(str(tmp_path), "xsub", "train", LAYOUT)
  assert arrays.data.shape == (6, 3, 50, 25, 2)
  assert arrays.path.endswith("train_data_t50.npy")
  plain = pipeline.load_split(str(tmp_path), "xsub", "train", LAYOUT, view_normalize=False)
  assert plain.path.endswith("train_data_t50_noview.npy")
  raw = pipeline.load_split(str(tmp_path), "xsub", "train", LAYOUT, frames=None)
  assert raw.data.shape[2] == 120


def test_bad_inputs_name_the_file_or_config_key(tmp_path):
  with pytest.raises(io.DataError, match="data.root"):
    pipeline.load_split(str(tmp_path), "xsub", "train", LAYOUT)
  _write(tmp_path, 4)
  with pytest.raises(io.DataError, match="data.layout"):
    pipeline.load_split(str(tmp_path), "xsub", "train", graph.MSR)
  # A label file whose length differs from the data.
  io.save_pickle(os.path.join(tmp_path, "xsub", "train_label.pkl"), (["a", "b"], [0, 1]))
  with pytest.raises(io.DataError, match="train_label.pkl: 2 labels for 4"):
    pipeline.load_split(str(tmp_path), "xsub", "train", LAYOUT)
  # An array of the wrong rank.
  np.save(os.path.join(tmp_path, "xsub", "train_data_t50.npy"), np.zeros((4, 3, 50, 25)))
  with pytest.raises(io.DataError, match=r"train_data_t50.npy: expected an array of shape"):
    pipeline.load_split(str(tmp_path), "xsub", "train", LAYOUT)


def test_load_data_generates_a_registered_generated_set_and_rejects_unknown_ones(tmp_path):
  from configs import synthetic as synthetic_config  # pylint: disable=g-import-not-at-top
  config = synthetic_config.get_config()
  config.data.root = str(tmp_path / "synthetic")
  config.data.synthetic_samples = 60
  config.data.frames = 20
  config.batch_size = 8
  data = pipeline.load_data(config)
  assert len(data.train) + len(data.val) == 60
  assert data.train.data.shape[1:] == (3, 20, 25, 2) and data.train.actionlet is not None
  config.data.dataset = "kinetics"
  with pytest.raises(ValueError, match="config key data.dataset"):
    pipeline.load_data(config)
