"""The pretrained network an evaluator works on: restored from a workdir's orbax checkpoint.

The latest checkpoint of `{workdir}/checkpoints` is restored as saved (numpy arrays) and checked
against the configured model, so that a checkpoint of another layout or width fails with the
mismatching leaves named rather than inside compilation.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from actclr_jax import graph
from actclr_jax.data import io
from actclr_jax.models import builder


@flax.struct.dataclass
class Pretrained:
  """What the evaluators need from a pretraining checkpoint.

  A pytree of its arrays (the strings and the step are static), with the attributes of a train
  state that `actionlet.inference_actionlet` reads (ema_params, ema_batch_stats, anchor), so it
  can be passed through jit as it is.
  """
  params: dict  # the evaluated network's {'encoder', 'projector'} (online unless network())
  batch_stats: dict  # the evaluated network's {'encoder'}
  ema_params: dict  # offline (momentum) network
  ema_batch_stats: dict
  anchor: np.ndarray  # (C, T, V, M) static anchor
  workdir: str = flax.struct.field(pytree_node=False, default="")
  path: str = flax.struct.field(pytree_node=False, default="")  # the directory of `step`
  step: int = flax.struct.field(pytree_node=False, default=0)

  @classmethod
  def from_state(cls, state: dict, **where) -> "Pretrained":
    """The evaluators' view of a restored pretraining state (restore_state's dict); `where`:
    workdir, path, step."""
    return cls(params=state["params"], batch_stats=state["batch_stats"],
               ema_params=state["ema_state"]["ema"], ema_batch_stats=state["ema_batch_stats"],
               anchor=state["anchor"], **where)

  def network(self, name: str) -> "Pretrained":
    """This checkpoint with the network `name` (online | offline, config key
    eval.features.network) in the place every evaluator reads (params, batch_stats); the offline
    network, which the actionlet reads, stays where it is."""
    params, batch_stats = network_variables(self, name)
    return self.replace(params=params, batch_stats=batch_stats)

  @property
  def variables(self) -> dict:
    """The evaluated network's {'params', 'batch_stats'}: what the evaluators encode with."""
    return {"params": self.params, "batch_stats": self.batch_stats}


NETWORKS = ("online", "offline")


def check_network(name: str) -> None:
  """Raises a ValueError naming config key eval.features.network unless `name` is one of
  NETWORKS."""
  if name not in NETWORKS:
    raise ValueError(f"config key eval.features.network={name!r}: expected one of {NETWORKS}")


def network_suffix(name: str) -> str:
  """What file names of results and caches of network `name` end with: "" for the online network
  (the names before the choice existed), "_offline" for the offline one."""
  check_network(name)
  return "" if name == "online" else f"_{name}"


def network_variables(state, name: str) -> tuple[dict, dict]:
  """(params, batch_stats) of network `name` (online | offline) of a train state or a
  Pretrained: anything with params, batch_stats, ema_params and ema_batch_stats."""
  check_network(name)
  if name == "online":
    return state.params, state.batch_stats
  return state.ema_params, state.ema_batch_stats


def expected_variables(config: ml_collections.ConfigDict) -> dict:
  """Shapes ({'params', 'batch_stats'} of ShapeDtypeStructs) of the configured ContrastiveNet."""
  layout = graph.get_layout(config.data.layout)
  return _variable_shapes(builder.build_model(config), config.data.frames, layout.num_joints)


@functools.lru_cache(maxsize=16)
def _variable_shapes(model, frames: int, joints: int) -> dict:
  """One trace of the model's init per model and input size (each evaluation checks its
  checkpoint against these; flax modules hash by their fields)."""
  x = jax.ShapeDtypeStruct((1, 3, frames, joints, 1), jnp.float32)
  return jax.eval_shape(functools.partial(builder.init_variables, model),
                        jax.random.PRNGKey(0), x)


def _shapes(tree) -> dict[str, tuple]:
  return {k: tuple(np.shape(v)) for k, v in
          flax.traverse_util.flatten_dict(tree, sep="/").items()}


def check_fits_config(config: ml_collections.ConfigDict, state: dict, where: str) -> None:
  """Raises a DataError naming `where` and every leaf whose shape differs from the config's."""
  expected = expected_variables(config)
  problems = []
  for group in ("params", "batch_stats"):
    want = _shapes(expected[group])
    have = _shapes(state.get(group, {}))
    for key in sorted(set(want) | set(have)):
      if key not in have:
        problems.append(f"{group}/{key}: missing from the checkpoint")
      elif key not in want:
        problems.append(f"{group}/{key}: in the checkpoint but not in the configured model")
      elif want[key] != have[key]:
        problems.append(f"{group}/{key}: checkpoint {have[key]} vs config {want[key]}")
  if problems:
    shown = "; ".join(problems[:6]) + (f"; ... ({len(problems)} in all)"
                                       if len(problems) > 6 else "")
    raise io.DataError(
        f"{where}: checkpoint does not match the configured model (config keys "
        f"data.layout={config.data.layout!r}, model.hidden_channels="
        f"{config.model.hidden_channels}, model.out_channels={config.model.out_channels}, "
        f"model.projection_dim={config.model.projection_dim}): {shown}. Evaluate with the "
        f"config the run was pretrained with{_pretrained_with(where)}.")


def _pretrained_with(checkpoint: str) -> str:
  """' (its config.json: data.layout=..., model=...)' of the run owning `checkpoint`, or ''."""
  path = os.path.join(os.path.dirname(os.path.dirname(checkpoint)), "config.json")
  try:
    with open(path) as f:
      saved = json.load(f)
    return f" ({path}: data.layout={saved['data']['layout']!r}, model={saved['model']})"
  except (OSError, ValueError, KeyError, TypeError):
    return ""


def checkpoint_steps(workdir: str) -> list[int]:
  """The steps of `{workdir}/checkpoints`, oldest first ([] when there is none)."""
  directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
  return sorted(ocp.CheckpointManager(directory).all_steps()) if os.path.isdir(directory) else []


def restore_state(workdir: str, config: ml_collections.ConfigDict,
                  step: int | None = None) -> tuple[dict, str, int]:
  """(the whole pretraining state as numpy arrays, its path, its step) of checkpoint `step` of
  `{workdir}/checkpoints` (the latest when None), checked against the config."""
  directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
  manager = ocp.CheckpointManager(
      directory, item_handlers={"state": ocp.PyTreeCheckpointHandler()}
  ) if os.path.isdir(directory) else None
  if step is None:
    step = None if manager is None else manager.latest_step()
  if step is None:
    raise io.DataError(f"{directory}: no checkpoint to evaluate; pretrain first "
                       f"(python main.py --mode=pretrain --workdir={workdir}) or fix --workdir")
  path = os.path.join(directory, str(step))
  if manager is None or step not in manager.all_steps():
    raise io.DataError(f"{path}: no such checkpoint (steps: {checkpoint_steps(workdir)})")
  try:
    # Straight into numpy, leaf by leaf as the metadata lists them: restoring jax arrays (one
    # placement per leaf) and converting them took 1.5x as long for the same values.
    tree = ocp.PyTreeCheckpointHandler().metadata(pathlib.Path(path, "state")).tree
    if not isinstance(tree, dict) or "params" not in tree or "ema_state" not in tree:
      raise io.DataError(f"{path}: not an ActCLR pretraining checkpoint (no params / ema_state)")
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    state = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(tree, restore_args=as_numpy)))["state"]
  except io.DataError:
    raise
  except Exception as e:  # orbax raises several types for unreadable or foreign checkpoints
    raise io.DataError(f"{path}: cannot restore the pretraining state: {e}") from e
  check_fits_config(config, state, path)
  return state, path, int(step)


def restore(workdir: str, config: ml_collections.ConfigDict,
            step: int | None = None) -> Pretrained:
  """Restores checkpoint `step` (the latest when None) of `{workdir}/checkpoints` and checks it
  fits the config; params and batch_stats hold the network of eval.features.network."""
  check_network(config.eval.features.network)  # before the restore, not after it
  state, path, step = restore_state(workdir, config, step)
  pre = Pretrained.from_state(state, workdir=workdir, path=path, step=step)
  return pre.network(config.eval.features.network)
