"""Shared test fixtures and helpers: tiny configs, a fresh train state, checkpoint restore,
and the augmentation tests' inputs."""

import os
import shutil
import tempfile


def xla_flags(*extra: str) -> str:
  """The session's XLA_FLAGS plus `extra`, for a subprocess's environment."""
  return " ".join([os.environ.get("XLA_FLAGS", ""), *extra]).strip()


# The tests run tiny models for a few steps, so compiling is most of their time on CPU. LLVM's
# optimisation level 0 compiles the tiny train steps 2.2-2.6x faster (MoCo 17.5 -> 6.5 s,
# ActCLR 22.2 -> 8.6 s) and runs them 1.3-1.8x slower (49-60 -> 76-86 ms per step of 8). Set
# before JAX starts its backend; subprocesses inherit it. A level the user sets is kept.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = xla_flags("--xla_backend_optimization_level=0")
# XLA's loop emitters instead of its MLIR fusion emitters: the tiny train steps compile in 0.70x
# (ActCLR, 8.1 -> 5.6 s) and 0.74x (MoCo, 6.2 -> 4.6 s) the time and run 1.11x and 1.30x slower
# (Intel AVX-512, stop 44; README "Timing history"). A value the user sets is kept.
if "xla_cpu_use_fusion_emitters" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] = xla_flags("--xla_cpu_use_fusion_emitters=false")

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from actclr_jax import augment, graph
from actclr_jax.models import builder
from actclr_jax.train import state as state_lib
from configs import synthetic as synthetic_config

_COMPILATION_CACHE = {}


def pytest_configure(config):
  """One persistent XLA compilation cache per test process, shared with the subprocesses that
  its tests start (they inherit the environment): most tests compile the same tiny train step,
  and on CPU compiling is most of their time. A cache hit loads the same executable, so results
  do not change. A JAX_COMPILATION_CACHE_DIR set before the run is used instead (and kept)."""
  if os.environ.get("JAX_COMPILATION_CACHE_DIR") and not os.environ.get("ACTCLR_TEST_CACHE"):
    directory = os.environ["JAX_COMPILATION_CACHE_DIR"]
  else:
    # Our own, per process (pytest-xdist workers inherit the controller's variables).
    directory = tempfile.mkdtemp(prefix="actclr_jax_test_cache_")
    _COMPILATION_CACHE["dir"] = directory
    os.environ["ACTCLR_TEST_CACHE"] = directory
  os.environ["JAX_COMPILATION_CACHE_DIR"] = directory
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config):
  if "dir" in _COMPILATION_CACHE:
    shutil.rmtree(_COMPILATION_CACHE.pop("dir"), ignore_errors=True)


SHARED_DATA = os.path.abspath(
    os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "shared", "data"))


@pytest.fixture
def shared_data() -> str:
  """Path of ../shared/data; skips the test where that folder is absent."""
  if not os.path.isdir(SHARED_DATA):
    pytest.skip(f"real data folder {SHARED_DATA} is absent (expected ../shared/data beside the repo)")
  return SHARED_DATA


def tiny_config(root):
  """A synthetic config small enough to compile and run in seconds on CPU."""
  config = synthetic_config.get_config()
  config.data.root = str(root)
  config.data.synthetic_samples = 240
  config.data.frames = 20
  config.model.hidden_channels = 4
  config.model.out_channels = 32
  config.model.projection_dim = 16
  config.batch_size = 16
  config.eval_batch_size = 32
  config.num_epochs = 2
  config.actionlet.start_epoch = 1
  config.moco.bank_size = 64
  config.knn_every_epochs = 1
  config.checkpoint_every_epochs = 1
  config.log_every_steps = 3
  config.learning_rate = 0.05
  return config


def eval_config(root):
  """tiny_config plus evaluation settings that run in seconds."""
  config = tiny_config(root)
  config.num_epochs = 1  # MoCo only: one train step to compile
  ev = config.eval
  ev.linear.epochs, ev.linear.batch_size, ev.linear.decay_epochs = 30, 16, (25,)
  # Batch 12: the semi subset (>= 1 per class) has at least 12 samples, so finetune and
  # semi share one compiled step.
  ev.finetune.epochs, ev.finetune.batch_size, ev.finetune.decay_epochs = 1, 12, ()
  ev.segment.window, ev.segment.stride = 20, 10
  ev.segment.epochs, ev.segment.batch_size, ev.segment.decay_epochs = 30, 64, (25,)
  ev.segment.lr = 0.5
  ev.segment.synthetic_sequences, ev.segment.synthetic_actions = 6, 4
  ev.segment.synthetic_clip_frames = 30
  ev.visualize.samples = 2
  ev.features.standardize = True  # see test_linear
  return config


def init_state(config, batch=8, seed=0):
  """(layout, model, tx, ema_tx, state, x): a fresh train state and a random (batch, 3, T, 25, 2)
  input, half of it with one body."""
  layout = graph.get_layout(config.data.layout)
  model = builder.build_model(config)
  tx = state_lib.build_optimizer(config, steps_per_epoch=10)
  ema_tx = state_lib.ema_transform(config)
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(batch, 3, config.data.frames, 25, 2)).astype(np.float32) * 0.2
  x[: batch // 2, ..., 1] = 0  # half the samples have one body
  state = state_lib.create_train_state(config, model, tx, x.mean(0), seed)
  return layout, model, tx, ema_tx, state, x


def make_batch(x, offset=0):
  """The step's batch dict for x, with sample indices offset, offset + 1, ..."""
  return {"data": jnp.asarray(x), "index": jnp.arange(offset, offset + len(x), dtype=jnp.int32)}


def restore_params(workdir):
  """(step, state) of the latest checkpoint in workdir, as a dict of arrays on this process's
  first device, whatever the devices that saved it."""
  directory = os.path.join(workdir, "checkpoints")
  step = ocp.CheckpointManager(directory).latest_step()
  path = os.path.join(directory, str(step), "state")
  checkpointer = ocp.StandardCheckpointer()
  metadata = checkpointer.metadata(path)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          getattr(metadata, "item_metadata", metadata))
  return step, checkpointer.restore(path, abstract)


# Inputs of the augmentation tests (test_augment.py, test_augment_views.py).

N, C, T, V, M = 4, 3, 20, 25, 2
LAYOUT = graph.get_layout("ntu")
PERM = LAYOUT.flip_permutation
PARTS = LAYOUT.parts


def augment_batch(seed: int = 0) -> np.ndarray:
  """Random (N, 3, T, V, 2) batch; samples 0 and 2 have no second body."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(N, C, T, V, M)).astype(np.float32)
  x[[0, 2], ..., 1] = 0
  return x


def augment_mask(seed: int = 1) -> np.ndarray:
  return np.random.default_rng(seed).uniform(size=(N, T, V, M)).astype(np.float32)


KEY = jax.random.PRNGKey(0)
PARTNER = jnp.array([1, 2, 3, 0])
MASK = jnp.asarray(augment_mask())

# Composites are compiled once per module and shared by the tests below (compiling is the
# slow part on CPU).
FULL = dict(actionlet_transforms=augment.PAPER_ACTIONLET_TRANSFORMS)  # the paper's whole T_act
ACT = jax.jit(lambda k, x, a: augment.actionlet_transform(k, x, a, LAYOUT, **FULL))
NON = jax.jit(lambda k, x: augment.non_actionlet_transform(k, x, LAYOUT))
MATS = jax.jit(lambda k, x, a: augment.mats(k, x, a, LAYOUT, return_views=True, **FULL))
