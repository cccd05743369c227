"""The random / MoCo v2 / ActCLR comparison (actclr_jax/compare.py) on a tiny synthetic run."""

import json
import os

import numpy as np
import orbax.checkpoint as ocp
import pytest

from actclr_jax import compare
from tests.conftest import eval_config


def _state_at(workdir, step=None):
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  step = manager.latest_step() if step is None else step
  state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  return step, state["state"]


def test_methods_share_phase_one_and_the_table_has_every_cell(tmp_path):
  config = eval_config(tmp_path / "data")
  config.num_epochs, config.actionlet.start_epoch = 2, 1
  config.knn_every_epochs = 0  # the comparison evaluates each encoder itself; no monitor
  config.eval.linear.epochs, config.eval.linear.decay_epochs = 5, (4,)
  workdir = str(tmp_path / "compare")
  results = compare.run_seed(config, workdir, 0, compare.METHODS)
  seed_dir = os.path.join(workdir, "seed0")
  # Both continuations start from phase 1's last checkpoint, then differ.
  half, phase1 = _state_at(os.path.join(seed_dir, "phase1"))
  for method in ("moco", "actclr"):
    _, state = _state_at(os.path.join(seed_dir, method), half)
    np.testing.assert_array_equal(state["bank"], phase1["bank"])
  (end_moco, moco), (end_actclr, actclr) = (_state_at(os.path.join(seed_dir, m))
                                            for m in ("moco", "actclr"))
  assert end_moco == end_actclr == 2 * half
  assert not np.allclose(moco["bank"], actclr["bank"])
  with open(os.path.join(seed_dir, "actclr", "metrics.jsonl")) as f:
    phases = {json.loads(l).get("phase") for l in f} - {None}
  assert phases == {2}
  with open(os.path.join(seed_dir, "moco", "metrics.jsonl")) as f:
    assert {json.loads(l).get("phase") for l in f} - {None} == {1}
  table = compare.summarize({0: results}, compare.METHODS)
  for protocol in compare.PROTOCOLS:
    for method in compare.METHODS:
      for metric in compare.METRICS:
        cell = table[protocol][method][metric]
        value = results[method][protocol][metric]
        assert cell["values"] == [value] and cell["mean"] == value and cell["std"] == 0.0
  # The cells are the evaluators' records: the last protocol evaluated (bn_recal) is on disk.
  last = list(compare.PROTOCOLS)[-1]
  for method in compare.METHODS:
    with open(os.path.join(seed_dir, method, "eval", "knn.json")) as f:
      knn = json.load(f)
    assert knn["config"]["eval"]["features"] == {**compare.PROTOCOLS[last],
                                                 "bn_recalibration_batch_size": 128,
                                                 "bn_recalibration_layers": "all",
                                                 "network": "online"}
    assert results[method][last]["knn_top1_k20"] == knn["metrics"]["top1_k20"]
  # Different encoders, and different feature protocols of one encoder, give different cells.
  cells = lambda method, protocol: tuple(results[method][protocol][m] for m in compare.METRICS)
  assert cells("random", "as_trained") != cells("actclr", "as_trained")
  assert cells("random", "as_trained") != cells("random", "standardized")
  text = compare.format_table(table, compare.METHODS, [0])
  assert "standardized (primary)" in text and text.count("actclr") == len(compare.PROTOCOLS)
  # A second call reuses the finished runs and evaluations.
  again = compare.run_seed(config, workdir, 0, compare.METHODS)
  assert again["actclr"]["standardized"] == results["actclr"]["standardized"]
  # The probe's own noise: seed 0 of the spread is the primary protocol's probe (run_seed's
  # seed is 0), on the same cached features; a second call reads the cache.
  random_dir = os.path.join(seed_dir, "random")
  spread = compare.probe_spread(config, random_dir, 3)
  assert len(spread) == 3
  assert spread[0] == results["random"][compare.PRIMARY]["linear_final_top1"]
  assert compare.probe_spread(config, random_dir, 2) == spread[:2]
  text = compare.format_probe_spread(
      {0: {m: {"probe_final_top1": [50.0, 60.0]} for m in compare.METHODS}}, compare.METHODS)
  assert "55.00 +- 5.00" in text and all(m in text for m in compare.METHODS)


def test_a_sigterm_stopped_run_is_neither_reused_nor_continued(tmp_path, monkeypatch):
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  stopped = {"step": 61, "epochs": 100, "preempted": True}
  with open(os.path.join(workdir, "pretrain_summary.json"), "w") as f:
    json.dump(stopped, f)
  assert not compare._finished(workdir, 100)
  config = type("Config", (), {"num_epochs": 100})()
  monkeypatch.setattr(compare.trainer, "train_and_evaluate", lambda c, w: dict(stopped))
  with pytest.raises(RuntimeError, match="SIGTERM at step 61"):
    compare.pretrain(config, workdir)
  with open(os.path.join(workdir, "pretrain_summary.json"), "w") as f:
    json.dump({**stopped, "step": 800, "preempted": False}, f)
  assert compare._finished(workdir, 100) and not compare._finished(workdir, 140)
  compare.pretrain(config, workdir)  # finished: reused, trainer not called


def test_each_evaluated_network_has_its_own_caches(tmp_path):
  config = eval_config(str(tmp_path))
  online = {compare.cache_path(config, "w", n) for n in ("compare_eval", "compare_probes")}
  config.eval.features.network = "offline"
  offline = {compare.cache_path(config, "w", n) for n in ("compare_eval", "compare_probes")}
  assert online == {os.path.join("w", "compare_eval.json"),
                    os.path.join("w", "compare_probes.json")}
  assert offline == {os.path.join("w", "compare_eval_offline.json"),
                     os.path.join("w", "compare_probes_offline.json")}
