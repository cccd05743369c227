"""Contrastive losses: MoCo v2 InfoNCE (Eq. 1) and similarity mining (Eq. 9), and the memory bank.

Features are L2-normalised (N, D); the memory bank is (K, D) of normalised keys. Each bank row
also records the index of the training sample its key came from (-1 for the random rows it
starts with), so that a query never meets a stale copy of its own key as a negative (`valid`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Logit of an excluded bank entry: exp() of it is exactly 0 in float32, and unlike -inf it
# gives 0, not NaN, when multiplied by a zero target probability.
_EXCLUDED = -1e9


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def center(z: jax.Array) -> jax.Array:
  """(N, D) projections minus their mean over the batch: removes the direction all share."""
  return z - jnp.mean(z, axis=0, keepdims=True)


def bank_mask(bank_index: jax.Array, sample_index: jax.Array,
              exclude_unfilled: bool = False) -> jax.Array:
  """(N, K) bool: True where bank row k may serve query i, i.e. holds another sample's key.

  exclude_unfilled: also False on the random rows the bank starts with (index -1), so that
  the negatives are real keys only.
  """
  valid = bank_index[None, :] != sample_index[:, None]
  return valid & (bank_index[None, :] >= 0) if exclude_unfilled else valid


def _bank_logits(z: jax.Array, bank: jax.Array, temperature: float,
                 valid: jax.Array | None) -> jax.Array:
  logits = (z @ bank.T) / temperature
  return logits if valid is None else jnp.where(valid, logits, _EXCLUDED)


def _info_nce_log_probs(z_q: jax.Array, z_k: jax.Array, bank: jax.Array, temperature: float,
                        valid: jax.Array | None) -> jax.Array:
  """(N, 1 + K): each query's log-softmax over its positive (column 0) and the bank."""
  positive = jnp.sum(z_q * z_k, axis=-1, keepdims=True) / temperature
  logits = jnp.concatenate([positive, _bank_logits(z_q, bank, temperature, valid)], axis=-1)
  return jax.nn.log_softmax(logits, axis=-1)


def info_nce(z_q: jax.Array, z_k: jax.Array, bank: jax.Array, temperature: float,
             valid: jax.Array | None = None) -> jax.Array:
  """Eq. 1: mean over i of -log exp(q.k/t) / (exp(q.k/t) + sum_j exp(q.m_j/t)).

  valid: optional (N, K) bool; bank entries where it is False are left out of query i's sum.
  """
  return -jnp.mean(_info_nce_log_probs(z_q, z_k, bank, temperature, valid)[:, 0])


def class_split_info_nce(z_q: jax.Array, z_k: jax.Array, bank: jax.Array, temperature: float,
                         valid: jax.Array, same_class: jax.Array) -> dict:
  """InfoNCE (`info_nce`) split exactly into a class term and an instance term, from labels
  (a diagnostic; labels never enter the loss). Per query, with p its softmax over the positive
  and its valid bank entries: -log p_pos = -log(p_pos + p_same) - log(p_pos / (p_pos + p_same)),
  p_same the mass on valid entries of the query's class.

  z_q, z_k: (N, D) unit vectors; bank: (K, D); valid, same_class: (N, K) bool.
  Returns means over queries: `class_term` (the cost of mass on other classes),
  `instance_term` (the cost of not telling the key from keys of its own class; it is
  log(1 + n_same) when all of them are as close as the positive), `same_class_keys` (n_same, the
  valid entries of the query's class) and `instance_floor` (log(1 + n_same)).
  """
  log_p = _info_nce_log_probs(z_q, z_k, bank, temperature, valid)
  same = valid & same_class
  log_own_class = jax.nn.logsumexp(
      jnp.concatenate([log_p[:, :1], jnp.where(same, log_p[:, 1:], -jnp.inf)], axis=-1),
      axis=-1)
  n_same = jnp.sum(same, axis=-1).astype(jnp.float32)
  return {"class_term": -jnp.mean(log_own_class),
          "instance_term": jnp.mean(log_own_class - log_p[:, 0]),
          "same_class_keys": jnp.mean(n_same),
          "instance_floor": jnp.mean(jnp.log1p(n_same))}


def negative_similarity(z: jax.Array, bank: jax.Array,
                        valid: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Cosine similarity of (N, D) unit vectors to the (K, D) bank's valid (N, K) entries: the mean
  over all valid pairs, and the mean over i of i's largest (a diagnostic of InfoNCE's negatives)."""
  similarity = z @ bank.T
  mean = jnp.sum(jnp.where(valid, similarity, 0.0)) / jnp.maximum(jnp.sum(valid), 1)
  hardest = jnp.mean(jnp.max(jnp.where(valid, similarity, -jnp.inf), axis=-1))
  return mean, hardest


def similarity_by_bank_age(z: jax.Array, bank: jax.Array, valid: jax.Array, pointer: jax.Array,
                           parts: int = 4) -> jax.Array:
  """Mean cosine similarity of (N, D) unit vectors to the (K, D) bank's valid (N, K) entries, by
  the entries' age: (parts,), part 0 the newest ~K / parts entries (those written last, just
  before `pointer`), part parts - 1 the oldest. A part with no valid entry gives NaN. A
  diagnostic of how fast the keys drift, and whether queries sit nearer the fresher keys."""
  size = bank.shape[0]
  age = (pointer - 1 - jnp.arange(size)) % size  # 0: the entry written last
  part = age * parts // size  # parts of equal size, or differing by one
  similarity = jnp.where(valid, z @ bank.T, 0.0)
  one_hot = (part[:, None] == jnp.arange(parts)[None, :]).astype(similarity.dtype)  # (K, parts)
  total = jnp.sum(similarity @ one_hot, axis=0)
  count = jnp.sum(valid.astype(similarity.dtype) @ one_hot, axis=0)
  return jnp.where(count > 0, total / jnp.maximum(count, 1.0), jnp.nan)


def pairwise_similarity(z: jax.Array) -> jax.Array:
  """Mean cosine similarity over the distinct pairs of (N, D) unit vectors, N >= 2 (how
  narrow a cone a batch of keys fills)."""
  # The sum over all pairs is |sum_i z_i|^2: O(N D), not an (N, N) matrix.
  n = z.shape[0]
  return (jnp.sum(jnp.sum(z, axis=0) ** 2) - jnp.sum(z * z)) / (n * (n - 1))


def similarity_mining(z_q: jax.Array, z_k: jax.Array, bank: jax.Array, tau_q: float,
                      tau_k: float, valid: jax.Array | None = None) -> jax.Array:
  """Eq. 9: mean over i of -sum_j p_k^ij log p_q^ij over the memory bank.

  p_k = softmax(sim(z_k, M) / tau_k) is a fixed target (the offline stream carries no gradient).
  valid: optional (N, K) bool; both distributions are taken over query i's valid entries only.
  """
  p_k = jax.nn.softmax(jax.lax.stop_gradient(_bank_logits(z_k, bank, tau_k, valid)), axis=-1)
  log_p_q = jax.nn.log_softmax(_bank_logits(z_q, bank, tau_q, valid), axis=-1)
  return -jnp.mean(jnp.sum(p_k * log_p_q, axis=-1))


def enqueue(bank: jax.Array, bank_index: jax.Array, pointer: jax.Array, keys: jax.Array,
            sample_index: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Writes keys (N, D) and their sample indices (N,) into the ring buffer from `pointer`,
  wrapping around. Returns the new bank (K, D), bank_index (K,) and pointer (pointer + N) mod K.
  """
  size = bank.shape[0]
  rows = (pointer + jnp.arange(keys.shape[0])) % size
  return (bank.at[rows].set(keys.astype(bank.dtype)),
          bank_index.at[rows].set(sample_index.astype(bank_index.dtype)),
          (pointer + keys.shape[0]) % size)
