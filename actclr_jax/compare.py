"""Random encoder vs MoCo v2 vs ActCLR on one data set, over several seeds.

  python -m actclr_jax.compare --config=configs/msr.py --workdir=runs/compare_msr --seeds=0,1,2

For every seed s, in {workdir}/seed{s}/:
  phase1/  plain MoCo v2 for actionlet.start_epoch epochs;
  moco/    phase 1's last checkpoint, continued to num_epochs as plain MoCo v2
           (actionlet.enabled=False, the same phase-2 learning-rate schedule);
  actclr/  phase 1's last checkpoint, continued to num_epochs with the actionlet, MATS, SAFP;
  random/  the randomly initialised network of the same seed (num_epochs=0).
So MoCo v2 and ActCLR share phase 1 and differ only in phase 2. Each encoder is then evaluated by
KNN (k=20) and the linear protocol (final and best top-1) under three feature protocols:
  standardized  features standardised with the training set's mean and std (the primary one,
                chosen before any run: a random encoder's raw features are nearly constant);
  as_trained    the family's protocol: inference-mode features, raw;
  bn_recal      BatchNorm statistics re-estimated on clean training data, raw features.
It prints a mean +- std table over seeds and writes {workdir}/compare.json. Finished runs and
evaluations are reused when the command is run again. With --probe_seeds=N it also trains the
primary protocol's linear probe with seeds 0..N-1 on each encoder's frozen features and prints
their final top-1 (mean +- std over probe seeds, averaged over seeds): the probe's own noise,
which a linear difference between encoders must exceed.
"""

from __future__ import annotations

if __name__ == "__main__":
  # First, before jax starts a thread: huge pages for XLA's step buffers (host_memory).
  from actclr_jax import host_memory
  host_memory.reexec_with_huge_pages()

import json
import os
import shutil
import time

from absl import app
from absl import flags
from absl import logging
import ml_collections
import numpy as np
from ml_collections import config_flags

from actclr_jax import logs
from actclr_jax.evaluate import evaluators, pretrained
from actclr_jax.train import trainer

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory of the comparison's runs and compare.json.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds; each gets its own runs.")
flags.DEFINE_list("methods", ["random", "moco", "actclr"], "Encoders to compare.")
flags.DEFINE_integer("probe_seeds", 1, "With N > 1, also train the primary protocol's linear "
                     "probe with seeds 0..N-1 on each encoder's fixed features and report the "
                     "spread: how much of a linear difference the probe alone makes.")
config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])

METHODS = ("random", "moco", "actclr")
# Feature protocols: values of the config group eval.features.
PROTOCOLS = {
    "standardized": dict(standardize=True, bn_recalibration=False),
    "as_trained": dict(standardize=False, bn_recalibration=False),
    "bn_recal": dict(standardize=False, bn_recalibration=True),
}
PRIMARY = "standardized"
METRICS = ("knn_top1_k20", "linear_final_top1", "linear_best_top1")


def _with(config: ml_collections.ConfigDict, **fields) -> ml_collections.ConfigDict:
  """A copy of config with dotted fields replaced, e.g. _with(c, **{"actionlet.enabled": 0})."""
  copy = ml_collections.ConfigDict(config.to_dict())
  copy.update_from_flattened_dict(fields)
  return copy


def _finished(workdir: str, epochs: int) -> bool:
  """Whether workdir holds a run that trained to `epochs` (a SIGTERM-stopped run has not)."""
  path = os.path.join(workdir, "pretrain_summary.json")
  if not os.path.exists(path):
    return False
  with open(path) as f:
    summary = json.load(f)
  return summary.get("epochs") == epochs and not summary.get("preempted", False)


def pretrain(config, workdir: str) -> None:
  """Runs (or resumes) the pretraining in workdir unless it already finished. Raises if it
  stops early (SIGTERM), so that no later stage branches from or evaluates a partial run."""
  if _finished(workdir, config.num_epochs):
    logging.info("reusing the finished run in %s", workdir)
    return
  summary = trainer.train_and_evaluate(config, workdir)
  if summary.get("preempted"):
    raise RuntimeError(f"{workdir}: pretraining stopped by SIGTERM at step {summary['step']} "
                       f"(saved); run the same command again to resume the comparison")


def branch_from(phase1: str, workdir: str) -> None:
  """Seeds workdir with phase 1's last checkpoint, so that pretraining resumes from it."""
  target = os.path.join(workdir, "checkpoints")
  if os.path.isdir(target):
    return
  source = os.path.join(phase1, "checkpoints")
  steps = sorted(int(d) for d in os.listdir(source) if d.isdigit())
  if not steps:
    raise FileNotFoundError(f"{source}: phase 1 left no checkpoint to branch from")
  os.makedirs(target + ".tmp", exist_ok=True)
  shutil.copytree(os.path.join(source, str(steps[-1])),
                  os.path.join(target + ".tmp", str(steps[-1])), dirs_exist_ok=True)
  os.replace(target + ".tmp", target)


def cache_path(config, workdir: str, name: str) -> str:
  """{workdir}/{name}.json, or {name}_offline.json when eval.features.network=offline: the
  comparison's caches are per evaluated network."""
  return os.path.join(workdir,
                      name + pretrained.network_suffix(config.eval.features.network) + ".json")


def evaluate(config, workdir: str) -> dict:
  """{protocol: {metric: value}} of the latest checkpoint in workdir, cached in
  compare_eval.json (cache_path)."""
  path = cache_path(config, workdir, "compare_eval")
  if os.path.exists(path):
    with open(path) as f:
      cached = json.load(f)
    if set(cached) == set(PROTOCOLS):
      return cached
  if 20 not in tuple(config.eval.knn.ks):
    raise ValueError(f"config key eval.knn.ks={tuple(config.eval.knn.ks)}: the comparison "
                     f"reports KNN k=20; include 20")
  results = {}
  for name, fields in PROTOCOLS.items():
    eval_config = _with(config, **{f"eval.features.{k}": v for k, v in fields.items()})
    knn = evaluators.get("knn").run(eval_config, workdir)["metrics"]
    lin = evaluators.get("linear").run(eval_config, workdir)["metrics"]
    results[name] = {"knn_top1_k20": knn["top1_k20"], "linear_final_top1": lin["final_top1"],
                     "linear_best_top1": lin["best_top1_over_epochs"]}
  with open(path + ".tmp", "w") as f:
    json.dump(results, f, indent=2)
  os.replace(path + ".tmp", path)
  return results


def run_seed(config, workdir: str, seed: int, methods, probe_seeds: int = 1) -> dict:
  """Pretrains and evaluates every method for one seed; {method: {protocol: metrics}}, plus
  {method: {"probe_final_top1": [...]}} with probe_seeds > 1."""
  config = _with(config, seed=seed)
  root = os.path.join(workdir, f"seed{seed}")
  start = config.actionlet.start_epoch
  if not 0 < start < config.num_epochs:
    raise ValueError(f"config key actionlet.start_epoch={start} must lie strictly between 0 and "
                     f"num_epochs={config.num_epochs} for a comparison with a shared phase 1")
  out = {}
  for method in methods:
    run_dir = os.path.join(root, method)
    t0 = time.time()
    if method == "random":
      pretrain(_with(config, num_epochs=0), run_dir)
    else:
      phase1 = os.path.join(root, "phase1")
      pretrain(_with(config, num_epochs=start), phase1)
      branch_from(phase1, run_dir)
      pretrain(_with(config, **{"actionlet.enabled": method == "actclr"}), run_dir)
    out[method] = evaluate(config, run_dir)
    if probe_seeds > 1:
      out[method]["probe_final_top1"] = probe_spread(config, run_dir, probe_seeds)
    out[method]["seconds"] = time.time() - t0
    logging.info("seed %d %s: %s", seed, method, out[method][PRIMARY])
  return out


def probe_spread(config, workdir: str, probe_seeds: int) -> list[float]:
  """Final linear top-1 of the primary protocol's probe for probe seeds 0..probe_seeds-1 on
  the frozen features of workdir's encoder (cached in compare_probes.json, cache_path)."""
  path = cache_path(config, workdir, "compare_probes")
  if os.path.exists(path):
    with open(path) as f:
      cached = json.load(f)
    if len(cached) >= probe_seeds:
      return cached[:probe_seeds]
  eval_config = _with(config, **{f"eval.features.{k}": v for k, v in PROTOCOLS[PRIMARY].items()})
  linear_evaluator = evaluators.get("linear")
  _, inputs, _ = linear_evaluator.probe_inputs(eval_config, workdir)
  finals = [linear_evaluator.probe(eval_config, inputs, seed, log_every=None)["final_top1"]
            for seed in range(probe_seeds)]
  with open(path + ".tmp", "w") as f:
    json.dump(finals, f)
  os.replace(path + ".tmp", path)
  return finals


def format_probe_spread(per_seed: dict, methods) -> str:
  """Per encoder: linear final top-1 mean +- std over probe seeds, averaged over seeds."""
  lines = [f"\nlinear probe seeds ({PRIMARY}): final top-1, mean +- std over probe seeds, "
           f"averaged over seeds", f"{'encoder':8s} | {'mean':>6s} | {'std':>5s} | per seed"]
  for method in methods:
    runs = [np.array(per_seed[s][method]["probe_final_top1"]) for s in per_seed]
    per = ", ".join(f"{r.mean():.2f} +- {r.std():.2f}" for r in runs)
    lines.append(f"{method:8s} | {np.mean([r.mean() for r in runs]):6.2f} | "
                 f"{np.mean([r.std() for r in runs]):5.2f} | {per}")
  return "\n".join(lines)


def summarize(per_seed: dict, methods) -> dict:
  """{protocol: {method: {metric: (mean, std)}}} over seeds (std with ddof=0 over seeds)."""
  table = {}
  for protocol in PROTOCOLS:
    table[protocol] = {}
    for method in methods:
      table[protocol][method] = {}
      for metric in METRICS:
        values = np.array([per_seed[s][method][protocol][metric] for s in per_seed])
        table[protocol][method][metric] = {"mean": float(values.mean()),
                                           "std": float(values.std()),
                                           "values": values.tolist()}
  return table


def format_table(table: dict, methods, seeds) -> str:
  lines = []
  for protocol in PROTOCOLS:
    tag = " (primary)" if protocol == PRIMARY else ""
    lines.append(f"\n{protocol}{tag}: mean +- std over seeds {','.join(map(str, seeds))}")
    lines.append(f"{'encoder':8s} | {'KNN k=20':>13s} | {'linear final':>13s} | "
                 f"{'linear best':>13s}")
    for method in methods:
      row = table[protocol][method]
      cells = [f"{row[m]['mean']:6.2f} +- {row[m]['std']:4.2f}" for m in METRICS]
      lines.append(f"{method:8s} | " + " | ".join(cells))
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logs.quiet_library_logs()
  config, workdir = FLAGS.config, FLAGS.workdir
  seeds = [int(s) for s in FLAGS.seeds]
  methods = [m for m in METHODS if m in FLAGS.methods]
  unknown = set(FLAGS.methods) - set(METHODS)
  if unknown:
    raise app.UsageError(f"--methods: unknown {sorted(unknown)}; choose from {METHODS}")
  os.makedirs(workdir, exist_ok=True)
  start = time.time()
  if FLAGS.probe_seeds < 1:
    raise app.UsageError(f"--probe_seeds={FLAGS.probe_seeds}: must be >= 1")
  per_seed = {seed: run_seed(config, workdir, seed, methods, FLAGS.probe_seeds) for seed in seeds}
  table = summarize(per_seed, methods)
  text = format_table(table, methods, seeds)
  if FLAGS.probe_seeds > 1:
    text += "\n" + format_probe_spread(per_seed, methods)
  record = {"config": json.loads(config.to_json_best_effort()), "seeds": seeds,
            "primary_protocol": PRIMARY, "table": table, "per_seed": per_seed,
            "wall_seconds": time.time() - start}
  with open(os.path.join(workdir, "compare.json.tmp"), "w") as f:
    json.dump(record, f, indent=2)
  os.replace(os.path.join(workdir, "compare.json.tmp"), os.path.join(workdir, "compare.json"))
  print(text, flush=True)
  print(f"\nwall time {time.time() - start:.0f} s; results in {workdir}/compare.json", flush=True)


if __name__ == "__main__":
  app.run(main)
