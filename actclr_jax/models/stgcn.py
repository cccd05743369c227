"""ST-GCN encoder (a quarter of the original width), projector and classifier.

Batches come in as (N, C, T, V, M). Inside the encoder the M bodies are extra
batch items and the layout is channels-last, (N*M, T, V, C), which is what
XLA's convolutions and matmuls prefer on CPU and GPU. The encoder returns the
final dense feature map channels-first per body, (N, M, C, T', V), the map the
actionlet (Eq. 3-5) and SAFP (Eq. 8) work on.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from actclr_jax import graph

NUM_BLOCKS = 10
# Blocks (1-based, as in NOTES.md) whose temporal conv has stride 2.
STRIDE_2_BLOCKS = (5, 8)


def block_channels(hidden_channels: int, out_channels: int) -> tuple[int, ...]:
  """Output channels of the 10 blocks: hc x4, 2hc x3, 4hc x2, out_channels."""
  hc = hidden_channels
  return (hc, hc, hc, hc, 2 * hc, 2 * hc, 2 * hc, 4 * hc, 4 * hc, out_channels)


def batch_norm(train: bool, name: str | None = None) -> nn.BatchNorm:
  # No axis_name: the trainer jits over a sharded global batch, so the batch
  # statistics jnp computes are already global.
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


def aggregate(x: jax.Array, adjacency: jax.Array) -> jax.Array:
  """Spatial graph aggregation over joints.

  Args:
    x: (B, T, V, K, C) per-subset features.
    adjacency: (K, V, W) weights; adjacency[k, v, w] weighs input joint v for output joint w.

  Returns:
    (B, T, W, C) with out[b, t, w, c] = sum_k sum_v x[b, t, v, k, c] * adjacency[k, v, w].
  """
  return jnp.einsum("btvkc,kvw->btwc", x, adjacency)


class TemporalConv(nn.Module):
  """Convolution over time with a (kernel, 1) filter on (B, T, V, C), 'same' padding.

  Parameters match nn.Conv's ('kernel' (K, 1, C_in, C_out), 'bias'), but the conv is a sum
  of K shifted matmuls: XLA's CPU convolution gradient is several times slower than this
  (1.7 s against 7.9 s for the last block at batch 128), and on GPU both lower to GEMMs.
  """

  features: int
  kernel_size: int = 9
  stride: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (self.kernel_size, 1, x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    pad = (self.kernel_size - 1) // 2
    frames = x.shape[1]
    out_frames = (frames + 2 * pad - self.kernel_size) // self.stride + 1
    padded = jnp.pad(x, ((0, 0), (pad, pad), (0, 0), (0, 0)))
    span = (out_frames - 1) * self.stride + 1
    y = sum(jnp.einsum("btvc,cd->btvd", padded[:, k:k + span:self.stride], kernel[k, 0])
            for k in range(self.kernel_size))
    return y + bias


class STGCNBlock(nn.Module):
  """One spatial-temporal block on channels-last (B, T, V, C_in) -> (B, T', V, features).

  Graph conv (1x1 conv to K*features, aggregation with A * edge importance),
  then BN -> ReLU -> temporal conv -> BN -> dropout, plus the residual, then ReLU.
  """

  layout: str
  features: int
  stride: int = 1
  residual: bool = True
  dropout: float = 0.0
  edge_importance: bool = True
  temporal_kernel: int = 9

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    adjacency = jnp.asarray(graph.get_layout(self.layout).adjacency())
    num_subsets, num_joints, _ = adjacency.shape
    if x.shape[2] != num_joints:
      raise ValueError(
          f"STGCNBlock for layout {self.layout!r} expects {num_joints} joints on axis 2, "
          f"got input of shape {x.shape}")
    if self.edge_importance:
      importance = self.param("edge_importance", nn.initializers.ones, adjacency.shape, jnp.float32)
      adjacency = adjacency * importance

    y = nn.Dense(num_subsets * self.features, name="gcn")(x)
    y = y.reshape(y.shape[:3] + (num_subsets, self.features))
    y = aggregate(y, adjacency)

    y = batch_norm(train, "tcn_bn1")(y)
    y = nn.relu(y)
    y = TemporalConv(self.features, self.temporal_kernel, self.stride, name="tcn_conv")(y)
    y = batch_norm(train, "tcn_bn2")(y)
    if self.dropout > 0:
      y = nn.Dropout(self.dropout, deterministic=not train)(y)

    if self.residual:
      if x.shape[-1] == self.features and self.stride == 1:
        res = x
      else:
        res = nn.Dense(self.features, name="res_conv")(x[:, ::self.stride])
        res = batch_norm(train, "res_bn")(res)
      y = y + res
    return nn.relu(y)


class STGCN(nn.Module):
  """ST-GCN encoder: (N, C, T, V, M) -> dense map (N, M, out_channels, T', V)."""

  layout: str = "ntu"
  in_channels: int = 3
  hidden_channels: int = 16
  out_channels: int = 256
  dropout: float = 0.5
  edge_importance: bool = True
  temporal_kernel: int = 9

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    num_joints = graph.get_layout(self.layout).num_joints
    if x.ndim != 5 or x.shape[1] != self.in_channels or x.shape[3] != num_joints:
      raise ValueError(
          f"STGCN(layout={self.layout!r}) expects (N, {self.in_channels}, T, {num_joints}, M), "
          f"got {x.shape}")
    n, c, t, v, m = x.shape
    # data_bn: one BN channel per (joint, xyz), statistics over N*M*T.
    x = jnp.transpose(x, (0, 4, 2, 3, 1)).reshape(n * m, t, v * c)
    x = batch_norm(train, "data_bn")(x)
    x = x.reshape(n * m, t, v, c)

    channels = block_channels(self.hidden_channels, self.out_channels)
    for i, features in enumerate(channels, start=1):
      x = STGCNBlock(
          layout=self.layout,
          features=features,
          stride=2 if i in STRIDE_2_BLOCKS else 1,
          residual=i > 1,
          dropout=self.dropout if i > 1 else 0.0,
          edge_importance=self.edge_importance,
          temporal_kernel=self.temporal_kernel,
          name=f"block{i}")(x, train=train)

    x = x.reshape((n, m) + x.shape[1:])  # (N, M, T', V, C)
    return jnp.transpose(x, (0, 1, 4, 2, 3))


def encoder_from(module: nn.Module) -> "STGCN":
  """An STGCN with the encoder fields of `module` (ContrastiveNet or Classifier)."""
  return STGCN(layout=module.layout, in_channels=module.in_channels,
               hidden_channels=module.hidden_channels, out_channels=module.out_channels,
               dropout=module.dropout, edge_importance=module.edge_importance,
               temporal_kernel=module.temporal_kernel)


def global_average_pool(h: jax.Array) -> jax.Array:
  """(N, M, C, T', V) -> (N, C): mean over (T', V) per body, then over M."""
  return h.mean(axis=(-2, -1)).mean(axis=1)


def weighted_pool(h: jax.Array, weights: jax.Array, eps: float = 1e-6) -> jax.Array:
  """SAFP (Eq. 8): (N, M, C, T', V) with weights (N, M, T', V) >= 0 -> (N, C).

  Per body sum_tv h * w / (sum_tv w + eps), then the mean over M.
  """
  w = weights[:, :, None]
  pooled = (h * w).sum(axis=(-2, -1)) / (w.sum(axis=(-2, -1)) + eps)
  return pooled.mean(axis=1)


def frame_pool(h: jax.Array) -> jax.Array:
  """(N, M, C, T', V) -> (N, T', C): mean over V and M, time kept."""
  return jnp.transpose(h.mean(axis=(1, 4)), (0, 2, 1))


class Projector(nn.Module):
  """MLP head: Dense(hidden) -> ReLU -> Dense(out)."""

  hidden: int = 256
  out: int = 128

  @nn.compact
  def __call__(self, feature: jax.Array) -> jax.Array:
    y = nn.relu(nn.Dense(self.hidden, name="fc1")(feature))
    return nn.Dense(self.out, name="fc2")(y)


class ContrastiveNet(nn.Module):
  """Encoder + projector; params['encoder'] and params['projector'] are transferable."""

  layout: str = "ntu"
  in_channels: int = 3
  hidden_channels: int = 16
  out_channels: int = 256
  dropout: float = 0.5
  edge_importance: bool = True
  temporal_kernel: int = 9
  projection_dim: int = 128

  def setup(self):
    self.encoder = encoder_from(self)
    self.projector = Projector(hidden=self.out_channels, out=self.projection_dim)

  def __call__(self, x: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    """Returns dense (N, M, C, T', V), feature = GAP (N, C), z = projector(feature)."""
    h = self.encoder(x, train=train)
    feature = global_average_pool(h)
    return {"dense": h, "feature": feature, "z": self.projector(feature)}

  def encode(self, x: jax.Array, *, train: bool) -> jax.Array:
    """The dense map (N, M, C, T', V) alone."""
    return self.encoder(x, train=train)

  def project(self, feature: jax.Array) -> jax.Array:
    """(N, C) pooled feature -> (N, projection_dim)."""
    return self.projector(feature)


class Classifier(nn.Module):
  """Encoder + linear head on the 256-d GAP feature; params['encoder'], params['head']."""

  num_classes: int
  layout: str = "ntu"
  in_channels: int = 3
  hidden_channels: int = 16
  out_channels: int = 256
  dropout: float = 0.5
  edge_importance: bool = True
  temporal_kernel: int = 9

  def setup(self):
    self.encoder = encoder_from(self)
    self.head = nn.Dense(self.num_classes)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """(N, C, T, V, M) -> logits (N, num_classes)."""
    return self.head(self.features(x, train=train))

  def features(self, x: jax.Array, *, train: bool) -> jax.Array:
    """(N, C, T, V, M) -> pooled feature (N, out_channels)."""
    return global_average_pool(self.encoder(x, train=train))

  def frame_features(self, x: jax.Array, *, train: bool) -> jax.Array:
    """(N, C, T, V, M) -> per-frame features (N, T', out_channels)."""
    return frame_pool(self.encoder(x, train=train))


def count_params(params: Any) -> int:
  """Total number of scalars in a pytree of parameters."""
  return int(sum(np.prod(np.shape(leaf)) for leaf in jax.tree_util.tree_leaves(params)))
