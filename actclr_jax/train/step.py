"""The ActCLR train step: a pure function of (state, batch), jitted by the trainer.

Two static variants: plain MoCo v2 (before `actionlet.start_epoch`, or throughout with
`actionlet.enabled=False`) and ActCLR (actionlet, MATS and SAFP).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax

from actclr_jax import actionlet, augment, graph, losses
from actclr_jax.models import stgcn
from actclr_jax.train import state as state_lib
from actclr_jax.train.state import TrainState


def offline_forward(model, variables, x, extra, *, splits: int, dropout_key, shuffle_key):
  """The offline network in train mode on x (N, C, T, V, M), with Shuffle-BN.

  MoCo's Shuffle-BN (Sec. 3.3) computes the keys' BatchNorm statistics on other sample groups
  than the queries', so that InfoNCE cannot find a query's key through the statistics the two
  share. On one device this is: permute the batch, split it into `splits` sub-batches, and
  normalise each sub-batch by its own statistics. `extra` (E, C, T, V, M) samples (the static
  anchor) join every sub-batch and come back averaged over them. splits=1 is one ordinary
  forward over x and extra together.

  Returns:
    (outputs of x (dict of (N, ...)), outputs of extra (dict of (E, ...)), new batch_stats: the
    mean over sub-batches of the per-sub-batch running-statistics updates).
  """
  n = x.shape[0]
  if splits == 1:
    out, updates = model.apply(variables, jnp.concatenate([x, extra]), train=True,
                               mutable=["batch_stats"], rngs={"dropout": dropout_key})
    return (jax.tree.map(lambda a: a[:n], out), jax.tree.map(lambda a: a[n:], out),
            updates["batch_stats"])
  if n % splits:
    raise ValueError(f"config key moco.shuffle_bn_splits={splits} does not divide the batch "
                     f"of {n}")
  order = jax.random.permutation(shuffle_key, n)
  groups = x[order].reshape((splits, n // splits) + x.shape[1:])
  groups = jnp.concatenate([groups, jnp.broadcast_to(extra, (splits,) + extra.shape)], axis=1)

  def forward(group, key):
    out, updates = model.apply(variables, group, train=True, mutable=["batch_stats"],
                               rngs={"dropout": key})
    return out, updates["batch_stats"]

  out, stats = jax.vmap(forward)(groups, jax.random.split(dropout_key, splits))
  restore = jnp.argsort(order)
  own = jax.tree.map(lambda a: a[:, :n // splits].reshape((n,) + a.shape[2:])[restore], out)
  shared = jax.tree.map(lambda a: a[:, n // splits:].mean(axis=0), out)
  return own, shared, jax.tree.map(lambda a: a.mean(axis=0), stats)


def train_step(state: TrainState, batch: dict, *, config: ml_collections.ConfigDict,
               model: stgcn.ContrastiveNet, tx: optax.GradientTransformation,
               ema_tx: optax.GradientTransformation, layout: graph.Layout,
               use_actionlet: bool,
               class_of_sample: jax.Array | None = None) -> tuple[TrainState, dict]:
  """One pretraining step on batch['data'] (N, C, T, V, M) with batch['index'] (N,), the
  samples' training-set indices (which keep each query away from its own keys in the bank).
  Returns the new state and metrics.

  class_of_sample: optional (N_train,) labels by training-set index, for the diagnostic
  `losses.class_split_info_nce` metrics only (config key log_class_split); training is unsupervised
  and the loss never reads them.

  A step whose loss is not finite leaves the state unchanged and reports finite = 0.
  """
  (rng, flip_rng, key_rng, query_rng, query_dropout, key_dropout,
   shuffle_rng) = jax.random.split(state_lib.step_key(config, state), 7)
  x, index = batch["data"], batch["index"]
  frames = x.shape[2]
  aug = config.augment
  x = augment.sample_flip(flip_rng, x, layout, aug)
  x_k = augment.key_view(key_rng, x, layout, aug, phase1=not use_actionlet)

  offline = {"params": state.ema_params, "batch_stats": state.ema_batch_stats}
  metrics = {}
  if use_actionlet:
    anchor = state.anchor if config.actionlet.anchor == "dataset" else jnp.mean(x, axis=0)
    extra = anchor[None]
  else:
    extra = x_k[:0]
  out_k, out_anchor, ema_batch_stats = offline_forward(
      model, offline, x_k, extra, splits=config.moco.shuffle_bn_splits, dropout_key=key_dropout,
      shuffle_key=shuffle_rng)
  if use_actionlet:
    dense = out_k["dense"]
    present = augment.body_presence(x_k)
    mask_dense, mask_input = actionlet.offline_actionlet(
        config, model, offline, dense, out_anchor["z"][0], layout, frames, present)
    if config.actionlet.placement == "random":
      # Its own stream, so that the default placement keeps the step's random numbers.
      mask_dense, mask_input = actionlet.relocate(jax.random.fold_in(query_rng, 1), mask_dense,
                                                  mask_input)
    elif config.actionlet.placement == "other_sample":
      mask_dense, mask_input = actionlet.borrow(mask_dense, mask_input, present)
    if config.actionlet.safp:
      pooled = stgcn.weighted_pool(dense, mask_dense)
      if config.actionlet.safp_norm == "gap":
        pooled = stgcn.match_norm(pooled, out_k["feature"])
      z_safp = model.apply(offline, pooled, method=model.project)
      mix = config.actionlet.safp_gap_mix
      z_k = mix * out_k["z"] + (1.0 - mix) * z_safp
      metrics["gap_key_similarity"] = losses.pairwise_similarity(
          losses.l2_normalize(out_k["z"]))
    else:
      z_k = out_k["z"]
    if config.actionlet.mats:
      x_q = augment.mats(query_rng, x, mask_input, layout, aug)
    else:
      x_q = augment.actionlet_transform(query_rng, x, None, layout, aug)[0]
    metrics["actionlet_area"] = jnp.mean(mask_input)
  else:
    z_k = out_k["z"]
    x_q = augment.query_view(query_rng, x, layout, aug)
  center = (config.loss.center_projections == "always"
            or (config.loss.center_projections == "phase2" and use_actionlet))
  if center:
    metrics["uncentered_key_similarity"] = losses.pairwise_similarity(
        losses.l2_normalize(z_k))
    z_k = losses.center(z_k)
  z_k = jax.lax.stop_gradient(losses.l2_normalize(z_k))
  metrics["key_similarity"] = losses.pairwise_similarity(z_k)
  valid = losses.bank_mask(state.bank_index, index, config.moco.exclude_unfilled_bank)

  def loss_fn(params):
    out_q, updates = model.apply({"params": params, "batch_stats": state.batch_stats}, x_q,
                                 train=True, mutable=["batch_stats"],
                                 rngs={"dropout": query_dropout})
    z_q = losses.l2_normalize(losses.center(out_q["z"]) if center else out_q["z"])
    nce = losses.info_nce(z_q, z_k, state.bank, config.moco.temperature, valid)
    mining = losses.similarity_mining(z_q, z_k, state.bank, config.loss.tau_q, config.loss.tau_k,
                                      valid)
    loss = config.loss.infonce_weight * nce + config.loss.mining_weight * mining
    positive = jnp.mean(jnp.sum(z_q * z_k, axis=-1))
    negative = losses.negative_similarity(z_q, state.bank, valid)
    return loss, (updates["batch_stats"], nce, mining, positive, negative, z_q)

  (loss, (batch_stats, nce, mining, positive, negative, z_q)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  if class_of_sample is not None:
    bank_class = jnp.where(state.bank_index >= 0,
                           class_of_sample[jnp.maximum(state.bank_index, 0)], -1)
    same_class = bank_class[None, :] == class_of_sample[index][:, None]
    metrics.update(losses.class_split_info_nce(z_q, z_k, state.bank, config.moco.temperature,
                                               valid, same_class))
  if config.log_bank_age:
    for name, z in (("query", z_q), ("key", z_k)):
      by_age = losses.similarity_by_bank_age(z, state.bank, valid, state.bank_pointer)
      metrics[f"{name}_newest_bank_similarity"] = by_age[0]
      metrics[f"{name}_oldest_bank_similarity"] = by_age[-1]
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  _, ema_state = ema_tx.update(params, state.ema_state)
  bank, bank_index, bank_pointer = losses.enqueue(state.bank, state.bank_index,
                                                  state.bank_pointer, z_k, index)
  new_state = state.replace(
      step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state,
      ema_state=ema_state, ema_batch_stats=ema_batch_stats, bank=bank, bank_index=bank_index,
      bank_pointer=bank_pointer, rng=jax.random.key_data(rng))
  finite = jnp.isfinite(loss)
  new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, state)
  metrics.update(loss=loss, infonce=nce, mining=mining, positive_similarity=positive,
                 negative_similarity=negative[0], hardest_negative_similarity=negative[1],
                 own_keys_in_bank=jnp.mean(jnp.sum(~valid, axis=1)),
                 finite=finite.astype(jnp.float32))
  return new_state, metrics


def make_train_step(config, model, tx, ema_tx, layout, use_actionlet: bool,
                    class_of_sample=None):
  """The step with everything but (state, batch) bound."""
  return functools.partial(train_step, config=config, model=model, tx=tx, ema_tx=ema_tx,
                           layout=layout, use_actionlet=use_actionlet,
                           class_of_sample=class_of_sample)
