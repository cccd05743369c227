"""ST-GCN encoder (a quarter of the original width), projector and classifier.

Batches come in as (N, C, T, V, M). Inside the encoder the M bodies are extra batch items
and the features are channels-last, in one of two memory layouts (config key
model.memory_layout; `memory_layout`):
  * joint-major (V, N*M, T, C), on CPU: each subset's graph aggregation is one
    (W, V) x (V, N*M*T*C) matrix product with no transposes, and the temporal convolution sees
    images of N*M x T pixels, one per joint;
  * batch-major (N*M, T, V, C), on GPUs, where cuDNN's convolutions and XLA's fusions run
    faster in this layout (README, "On a GPU again").
The encoder returns the final dense feature map channels-first per body, (N, M, C, T', V), the
map the actionlet (Eq. 3-5) and SAFP (Eq. 8) work on. Both layouts have the same parameters and
compute the same function, up to float rounding and the dropout masks' draws.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from actclr_jax import graph
from actclr_jax.models import convolutions

NUM_BLOCKS = 10
# flax momentum (running = momentum * running + (1 - momentum) * batch) of every BatchNorm.
BATCH_NORM_MOMENTUM = 0.9
# Blocks (1-based, as in NOTES.md) whose temporal conv has stride 2.
STRIDE_2_BLOCKS = (5, 8)


def block_channels(hidden_channels: int, out_channels: int) -> tuple[int, ...]:
  """Output channels of the 10 blocks: hc x4, 2hc x3, 4hc x2, out_channels."""
  hc = hidden_channels
  return (hc, hc, hc, hc, 2 * hc, 2 * hc, 2 * hc, 4 * hc, 4 * hc, out_channels)


def batch_norm(train: bool, name: str | None = None, dtype: Any = jnp.float32) -> nn.BatchNorm:
  # No axis_name: the trainer jits over a sharded global batch, so the batch
  # statistics jnp computes are already global. Statistics and parameters stay float32
  # (flax reduces in float32); `dtype` is the output's.
  return nn.BatchNorm(use_running_average=not train, momentum=BATCH_NORM_MOMENTUM, epsilon=1e-5,
                      dtype=dtype, param_dtype=jnp.float32, name=name)


MEMORY_LAYOUTS = ("auto", "joint_major", "batch_major")


def memory_layout(name: str = "auto") -> str:
  """The encoder's resolved memory layout (config key model.memory_layout): "auto" is
  "joint_major" on the CPU backend and "batch_major" elsewhere. On one H200 at batch 128
  (README, "On a GPU again"), batch-major MoCo v2 steps ran 1.07x (float32) and 1.31x
  (bfloat16) as fast as joint-major ones; on CPU joint-major is the faster (README, "A
  joint-major layout")."""
  if name not in MEMORY_LAYOUTS:
    raise ValueError(f"config key model.memory_layout={name!r}: expected one of {MEMORY_LAYOUTS}")
  if name == "auto":
    return "joint_major" if jax.default_backend() == "cpu" else "batch_major"
  return name


class TemporalConv(nn.Module):
  """Convolution over time with a K-tap filter, 'same' padding, on joint-major (V, B, T, C)
  or batch-major (B, T, V, C) features.

  Parameters are nn.Conv's ('kernel' (K, 1, C_in, C_out), 'bias'); the computation is
  `convolutions.temporal_conv` (joint-major) or `convolutions.batch_major_conv`, in `dtype`.
  """

  features: int
  kernel_size: int = 9
  stride: int = 1
  dtype: Any = jnp.float32
  method: str = "auto"  # temporal_conv's; batch-major has the direct form only
  joint_major: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (self.kernel_size, 1, x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    if self.joint_major:
      y = convolutions.temporal_conv(x, kernel, self.stride, self.method)
    elif self.method == "spectral":
      raise ValueError("config key model.temporal_conv='spectral' needs model.memory_layout "
                       "'joint_major' ('auto' is batch-major on this backend)")
    else:
      y = convolutions.batch_major_conv(x, kernel, self.stride)
    return y + bias.astype(self.dtype)


class DenseParams(nn.Module):
  """The parameters of nn.Dense(features) (same names, shapes and init), returned unused, for
  layers that apply them in another order."""

  in_features: int
  features: int

  @nn.compact
  def __call__(self) -> tuple[jax.Array, jax.Array]:
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (self.in_features, self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return kernel, bias


class STGCNBlock(nn.Module):
  """One spatial-temporal block, joint-major (V, B, T, C_in) -> (V, B, T', features) or
  batch-major (B, T, V, C_in) -> (B, T', V, features).

  Graph conv (1x1 conv to K*features, aggregation with A * edge importance),
  then BN -> ReLU -> temporal conv -> BN -> dropout, plus the residual, then ReLU.
  Computation in `dtype`; parameters and BatchNorm statistics stay float32.
  """

  layout: str
  features: int
  stride: int = 1
  residual: bool = True
  dropout: float = 0.0
  edge_importance: bool = True
  temporal_kernel: int = 9
  dtype: Any = jnp.float32
  temporal_conv: str = "auto"
  joint_major: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    adjacency = jnp.asarray(graph.get_layout(self.layout).adjacency())
    num_subsets, num_joints, _ = adjacency.shape
    joint_axis = 0 if self.joint_major else 2
    if x.shape[joint_axis] != num_joints:
      raise ValueError(
          f"STGCNBlock for layout {self.layout!r} expects {num_joints} joints on axis "
          f"{joint_axis}, got input of shape {x.shape}")
    if self.edge_importance:
      importance = self.param("edge_importance", nn.initializers.ones, adjacency.shape, jnp.float32)
      adjacency = adjacency * importance

    kernel, bias = DenseParams(x.shape[-1], num_subsets * self.features, name="gcn")()
    conv = (convolutions.graph_conv if self.joint_major
            else convolutions.batch_major_graph_conv)
    y = conv(*(a.astype(self.dtype) for a in (x, adjacency, kernel, bias)))
    y = batch_norm(train, "tcn_bn1", self.dtype)(y)
    y = nn.relu(y)
    y = TemporalConv(self.features, self.temporal_kernel, self.stride, dtype=self.dtype,
                     method=self.temporal_conv, joint_major=self.joint_major, name="tcn_conv")(y)
    y = batch_norm(train, "tcn_bn2", self.dtype)(y)
    if self.dropout > 0:
      y = nn.Dropout(self.dropout, deterministic=not train)(y)

    if self.residual:
      if x.shape[-1] == self.features and self.stride == 1:
        res = x.astype(self.dtype)
      else:
        strided = x[:, :, ::self.stride] if self.joint_major else x[:, ::self.stride]
        res = nn.Dense(self.features, dtype=self.dtype, name="res_conv")(strided)
        res = batch_norm(train, "res_bn", self.dtype)(res)
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
  # Compute dtype (float32 | bfloat16); parameters, BN statistics and the output stay float32.
  dtype: Any = jnp.float32
  temporal_conv: str = "auto"  # `convolutions.temporal_conv`'s method; the same parameters
  memory_layout: str = "auto"  # `memory_layout`'s; the parameters are the same

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
    x = batch_norm(train, "data_bn")(x).reshape(n * m, t, v, c)
    joint_major = memory_layout(self.memory_layout) == "joint_major"
    if joint_major:
      x = jnp.transpose(x, (2, 0, 1, 3))  # (V, N*M, T, C)

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
          dtype=self.dtype,
          temporal_conv=self.temporal_conv,
          joint_major=joint_major,
          name=f"block{i}")(x, train=train)

    x = x.astype(jnp.float32)
    if joint_major:
      x = x.reshape((v, n, m) + x.shape[2:])  # (V, N, M, T', C)
      return jnp.transpose(x, (1, 2, 4, 3, 0))
    x = x.reshape((n, m) + x.shape[1:])  # (N, M, T', V, C)
    return jnp.transpose(x, (0, 1, 4, 2, 3))


def encoder_from(module: nn.Module) -> "STGCN":
  """An STGCN with the encoder fields of `module` (ContrastiveNet or Classifier)."""
  return STGCN(layout=module.layout, in_channels=module.in_channels,
               hidden_channels=module.hidden_channels, out_channels=module.out_channels,
               dropout=module.dropout, edge_importance=module.edge_importance,
               temporal_kernel=module.temporal_kernel, dtype=module.dtype,
               temporal_conv=module.temporal_conv, memory_layout=module.memory_layout)


def global_average_pool(h: jax.Array) -> jax.Array:
  """(N, M, C, T', V) -> (N, C): mean over (T', V) per body, then over M."""
  return h.mean(axis=(-2, -1)).mean(axis=1)


def weighted_pool(h: jax.Array, weights: jax.Array, eps: float = 1e-6) -> jax.Array:
  """SAFP (Eq. 8): (N, M, C, T', V) with weights (N, M, T', V) >= 0 -> (N, C).

  sum_mtv h * w / (sum_mtv w + eps): the weighted mean over the sample's whole actionlet, so a
  body with no actionlet (absent or idle) adds nothing. Uniform weights give the GAP feature.
  """
  w = weights[:, :, None]
  return (h * w).sum(axis=(1, 3, 4)) / (w.sum(axis=(1, 3, 4)) + eps)


def match_norm(feature: jax.Array, reference: jax.Array, eps: float = 1e-12) -> jax.Array:
  """(N, C) feature rescaled per sample to the L2 norm of (N, C) reference; direction kept."""
  norm = lambda a: jnp.linalg.norm(a, axis=-1, keepdims=True)
  return feature * (norm(reference) / jnp.maximum(norm(feature), eps))


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
  dtype: Any = jnp.float32  # the encoder's compute dtype; the projector runs in float32
  temporal_conv: str = "auto"
  memory_layout: str = "auto"

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
  dtype: Any = jnp.float32  # the encoder's compute dtype; the head runs in float32
  temporal_conv: str = "auto"
  memory_layout: str = "auto"

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
