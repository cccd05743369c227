"""The multi-host path: two local processes joined by jax.distributed (CPU, localhost
coordinator), each reading its own slice of every global batch, train to the same parameters as
one process with the same two-device mesh, and their monitors agree with its monitor."""

import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np

from actclr_jax.data import pipeline
from tests.conftest import restore_params, tiny_config, xla_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import sys
    import jax
    sys.path.insert(0, {repo!r})
    process_id, num_processes = int(sys.argv[1]), int(sys.argv[2])
    if num_processes > 1:
      jax.distributed.initialize(coordinator_address="localhost:{port}",
                                 num_processes=num_processes, process_id=process_id)
    assert jax.device_count() == 2, jax.devices()
    from actclr_jax.train import trainer
    from tests.conftest import tiny_config
    config = tiny_config({root!r})
    config.actionlet.start_epoch = 2  # MoCo v2 only: one step to compile
    config.knn_at_start = False
    config.knn_every_epochs = 2  # the monitor runs once, at the end
    summary = trainer.train_and_evaluate(config, {workdir!r})
    print("DONE", jax.process_index(), summary["step"], summary["knn_top1_k20"],
          summary["actionlet_iou"], flush=True)
""")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _script(root, workdir) -> str:
  return SCRIPT.format(repo=REPO, port=_free_port(), root=str(root), workdir=str(workdir))


def test_two_processes_train_like_one(tmp_path):
  root = tmp_path / "synthetic"
  pipeline.prepare_synthetic_if_missing(tiny_config(root))  # before the runs, which share it
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  # One process with two CPU devices (the reference) and two processes with one device each
  # and one coordinator, all at once: on CPU each spends most of its time compiling, on one core.
  single = subprocess.Popen(
      [sys.executable, "-c", _script(root, tmp_path / "one"), "0", "1"], cwd=REPO,
      env=dict(env, XLA_FLAGS=xla_flags("--xla_force_host_platform_device_count=2")),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  script = _script(root, tmp_path / "two")
  processes = [subprocess.Popen([sys.executable, "-c", script, str(i), "2"], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(2)]
  single_stdout, single_stderr = single.communicate(timeout=600)
  assert single.returncode == 0, single_stderr[-3000:]
  outputs = [p.communicate(timeout=600) for p in processes]
  for p, (stdout, stderr) in zip(processes, outputs):
    assert p.returncode == 0, stderr[-3000:]
  done = sorted(line for stdout, _ in outputs for line in stdout.splitlines()
                if line.startswith("DONE"))
  assert [line.split()[1] for line in done] == ["0", "1"]
  # Every process monitors the whole splits: the same KNN and IoU as the one-process run.
  reference = [l for l in single_stdout.splitlines() if l.startswith("DONE")][0].split()[2:]
  for line in done:
    np.testing.assert_allclose([float(v) for v in line.split()[2:]],
                               [float(v) for v in reference], atol=0.5)
  step_one, one = restore_params(tmp_path / "one")
  step_two, two = restore_params(tmp_path / "two")
  assert step_one == step_two > 0
  # The same two-device reductions, across processes (gloo) or within one: bit-identical.
  for name in ("params", "ema_state", "batch_stats", "bank", "bank_index", "rng"):
    for a, b in zip(jax.tree.leaves(one[name]), jax.tree.leaves(two[name])):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)
