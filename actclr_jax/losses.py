"""Contrastive losses: MoCo v2 InfoNCE (Eq. 1) and similarity mining (Eq. 9).

Features are L2-normalised (N, D); the memory bank is (K, D) of normalised keys.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def info_nce(z_q: jax.Array, z_k: jax.Array, bank: jax.Array, temperature: float) -> jax.Array:
  """Eq. 1: mean over i of -log exp(q.k/t) / (exp(q.k/t) + sum_j exp(q.m_j/t))."""
  positive = jnp.sum(z_q * z_k, axis=-1, keepdims=True)
  logits = jnp.concatenate([positive, z_q @ bank.T], axis=-1) / temperature
  return -jnp.mean(jax.nn.log_softmax(logits, axis=-1)[:, 0])


def similarity_mining(z_q: jax.Array, z_k: jax.Array, bank: jax.Array, tau_q: float,
                      tau_k: float) -> jax.Array:
  """Eq. 9: mean over i of -sum_j p_k^ij log p_q^ij over the memory bank.

  p_k = softmax(sim(z_k, M) / tau_k) is a fixed target (the offline stream carries no gradient).
  """
  p_k = jax.nn.softmax(jax.lax.stop_gradient(z_k @ bank.T) / tau_k, axis=-1)
  log_p_q = jax.nn.log_softmax(z_q @ bank.T / tau_q, axis=-1)
  return -jnp.mean(jnp.sum(p_k * log_p_q, axis=-1))


def enqueue(bank: jax.Array, pointer: jax.Array, keys: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Writes keys (N, D) into the ring buffer bank (K, D) from `pointer`, wrapping around.

  Returns the new bank and pointer (pointer + N) mod K.
  """
  size = bank.shape[0]
  rows = (pointer + jnp.arange(keys.shape[0])) % size
  return bank.at[rows].set(keys.astype(bank.dtype)), (pointer + keys.shape[0]) % size
