"""Train-step throughput: compile time and samples/s of both step variants.

  python -m actclr_jax.train.benchmark --batch_size=128 [--steps=5] [--layout=ntu --bodies=2]

Uses random inputs of the paper's shape (N, 3, 50, V, M) on every local device.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from actclr_jax import graph
from actclr_jax.train import state as state_lib
from actclr_jax.train import trainer
from configs import default


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--frames", type=int, default=50)
  parser.add_argument("--layout", default="ntu")
  parser.add_argument("--bodies", type=int, default=2)
  args = parser.parse_args(argv)

  config = default.get_config()
  config.batch_size = args.batch_size
  config.data.layout = args.layout
  config.data.frames = args.frames
  layout = graph.get_layout(args.layout)
  mesh = trainer.make_mesh()
  model = state_lib.build_model(config)
  tx = state_lib.build_optimizer(config, steps_per_epoch=1000)
  ema_tx = state_lib.ema_transform(config)
  rng = np.random.default_rng(0)
  shape = (args.batch_size, 3, args.frames, layout.num_joints, args.bodies)
  x = (rng.normal(size=shape) * 0.2).astype(np.float32)
  batch = {"data": jax.device_put(jnp.asarray(x), NamedSharding(mesh, P("data")))}
  steps = trainer.jit_train_steps(config, model, tx, ema_tx, layout, mesh)
  results = {"devices": [str(d) for d in jax.devices()], "batch_size": args.batch_size,
             "input_shape": list(shape)}
  for use_actionlet in (False, True):
    state = state_lib.create_train_state(config, model, tx, x.mean(0), jax.random.PRNGKey(0))
    state = jax.device_put(state, NamedSharding(mesh, P()))
    start = time.perf_counter()
    compiled = steps[use_actionlet].lower(state, batch).compile()
    compile_seconds = time.perf_counter() - start
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(args.steps):
      state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    seconds = (time.perf_counter() - start) / args.steps
    name = "actclr" if use_actionlet else "moco"
    results[name] = {"compile_seconds": round(compile_seconds, 2),
                     "step_seconds": round(seconds, 4),
                     "samples_per_second": round(args.batch_size / seconds, 1)}
    print(f"{name:7s} compile {compile_seconds:7.2f} s | step {seconds * 1e3:9.1f} ms | "
          f"{args.batch_size / seconds:9.1f} samples/s", flush=True)
  print(json.dumps(results))


if __name__ == "__main__":
  main()
