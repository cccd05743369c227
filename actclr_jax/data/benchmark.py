"""Input-pipeline benchmark: samples/s of the grain loader alone, at NTU shape.

  python -m actclr_jax.data.benchmark [--num_samples=8192] [--batch_size=128] [--root=data/ntu60]

Without --root it writes a memory-mapped split of random (N, 3, 50, 25, 2) float32 sequences
(NTU-60's 50-frame cache layout) to a temporary folder. It times one epoch of:
  * the trainer's loader (pipeline.train_loader: shuffled, sharded, batched) with
    worker_count 0 and 2 (grain worker processes);
  * the same records through grain's dataset API with grain.experimental.device_put, which
    prefetches batches onto the device, as a GPU run would want.
The target is the step rate the train-step benchmark's roofline predicts for an H100: the
loader must deliver more samples/s than the fastest possible step consumes.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import time

from absl import app
from absl import flags
import grain
import jax
import numpy as np

from actclr_jax import graph
from actclr_jax.data import pipeline

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_samples", 8192, "Samples of the temporary split (without --root).")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_string("root", "", "A prepared data root to read instead ({root}/{split}/train_*).")
flags.DEFINE_string("split", "xview", "Split under --root.")
flags.DEFINE_list("worker_counts", ["0", "2"], "grain worker processes to time.")


def write_random_split(directory: str, num_samples: int) -> str:
  """A split of random NTU-shaped sequences: {directory}/xview/train_data_t50*.npy + labels."""
  split_dir = os.path.join(directory, "xview")
  os.makedirs(split_dir)
  shape = (num_samples, 3, 50, 25, 2)
  from actclr_jax.data import preprocess  # pylint: disable=g-import-not-at-top
  path = os.path.join(split_dir, f"train_data{preprocess.cache_suffix(50, True, True, True)}.npy")
  data = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
  rng = np.random.default_rng(0)
  for start in range(0, num_samples, 1024):
    stop = min(start + 1024, num_samples)
    data[start:stop] = rng.normal(size=(stop - start,) + shape[1:]).astype(np.float32)
  data.flush()
  del data
  # The raw-length array the cache would come from is not needed: the cache exists.
  np.save(os.path.join(split_dir, "train_data.npy"), np.zeros((num_samples, 3, 1, 25, 2),
                                                              np.float32))
  with open(os.path.join(split_dir, "train_label.pkl"), "wb") as f:
    pickle.dump(([f"s{i}" for i in range(num_samples)], [i % 60 for i in range(num_samples)]), f)
  return directory


def time_epoch(batches, batch_size: int) -> dict:
  """samples/s of iterating `batches`, the first batch (start-up) timed apart."""
  start = time.perf_counter()
  iterator = iter(batches)
  first = next(iterator)
  jax.block_until_ready(first)
  startup = time.perf_counter() - start
  count, start = 0, time.perf_counter()
  for batch in iterator:
    jax.block_until_ready(batch)
    count += 1
  seconds = time.perf_counter() - start
  return {"startup_seconds": startup, "batches": count,
          "samples_per_second": count * batch_size / max(seconds, 1e-9)}


def main(argv):
  del argv
  layout = graph.get_layout("ntu")
  with tempfile.TemporaryDirectory() as tmp:
    root = FLAGS.root or write_random_split(tmp, FLAGS.num_samples)
    split = FLAGS.split if FLAGS.root else "xview"
    arrays = pipeline.load_split(root, split, "train", layout)
    results = {"num_samples": len(arrays), "batch_size": FLAGS.batch_size,
               "sample_shape": list(arrays.data.shape[1:]), "loaders": {}}
    for workers in (int(w) for w in FLAGS.worker_counts):
      loader = pipeline.train_loader(arrays, global_batch_size=FLAGS.batch_size, epoch=0, seed=0,
                                     stream="joint", layout=layout, worker_count=workers)
      r = time_epoch(loader, FLAGS.batch_size)
      results["loaders"][f"train_loader_workers{workers}"] = r
      print(f"train_loader, {workers} workers: {r['samples_per_second']:9.0f} samples/s "
            f"(start-up {r['startup_seconds']:.1f} s)", flush=True)
    dataset = (grain.MapDataset.source(pipeline.SkeletonSource(arrays))
               .shuffle(seed=0)
               .map(lambda r: {"data": r["data"], "index": r["index"]})
               .batch(FLAGS.batch_size, drop_remainder=True)
               .to_iter_dataset())
    on_device = grain.experimental.device_put(dataset, jax.devices()[0])
    r = time_epoch(on_device, FLAGS.batch_size)
    results["loaders"]["dataset_device_put"] = r
    print(f"dataset API + device_put prefetch: {r['samples_per_second']:9.0f} samples/s "
          f"(start-up {r['startup_seconds']:.1f} s)", flush=True)
  print(json.dumps(results))


if __name__ == "__main__":
  app.run(main)
