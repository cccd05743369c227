"""The encoder's two convolutions as array functions, in its memory layouts (stgcn.py).

* The temporal convolution: the direct form (`lax.conv_general_dilated`; on the CPU backend
  with a GEMM-based VJP) and the spectral form (a product in the frequency domain), on
  joint-major (V, B, T, C) features; `batch_major_conv` on batch-major (B, T, V, C) features.
* The graph convolution: `graph_conv` (joint-major) and `batch_major_graph_conv`, each taking
  the cheaper order of its two linear maps.
Every form computes the same function as its definition; they differ by float rounding.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


# --------------------------------------------------------------------------- temporal conv
#
# The temporal convolution holds about 85% of the encoder's FLOPs. On CPU, XLA runs the forward
# convolution and its input gradient as fast GEMM-based kernels (YNNPACK), but its weight
# gradient (a convolution whose contraction runs over the whole batch) takes a slow generic path
# (about 10x the forward time at the last block), and the input gradient of a strided convolution
# too. The VJP below keeps the fast kernels and writes the other two as GEMMs.

# Joint-major (V, B, T, C) as NHWC: one image per joint, B x T pixels, and a (1, K) filter
# over T. On CPU this runs as fast as the (B, T, V, C) layout's (K, 1) filter, and faster than
# folding V into the batch ((V * B, T, 1, C), up to 1.7x slower at 32 channels).
_CONV_DIMS = ("NHWC", "HWIO", "NHWC")
# Bytes of one im2col chunk in the weight gradient: small enough to stay in cache.
_WEIGHT_GRAD_CHUNK_BYTES = 6 << 20


def _conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """(V, B, T, C) * (K, 1, C, D) -> (V, B, T', D), 'same' padding over T."""
  kernel_size, _, c, d = kernel.shape
  pad = (kernel_size - 1) // 2
  return jax.lax.conv_general_dilated(x, kernel.reshape(1, kernel_size, c, d), (1, stride),
                                      ((0, 0), (pad, pad)), dimension_numbers=_CONV_DIMS)


def batch_major_conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """The batch-major layout's temporal convolution, with XLA's VJP:
  (B, T, V, C) * (K, 1, C, D) -> (B, T', V, D), 'same' padding over T."""
  pad = (kernel.shape[0] - 1) // 2
  return jax.lax.conv_general_dilated(x, kernel, (stride, 1), ((pad, pad), (0, 0)),
                                      dimension_numbers=_CONV_DIMS)


def _chunks(batch: int, bytes_per_item: int) -> int:
  """The fewest chunks (a divisor of batch) whose items take at most the chunk budget."""
  for count in range(1, batch + 1):
    if batch % count == 0 and (batch // count) * bytes_per_item <= _WEIGHT_GRAD_CHUNK_BYTES:
      return count
  return batch


def _weight_grad(x: jax.Array, g: jax.Array, kernel_size: int, stride: int) -> jax.Array:
  """d(loss)/d(kernel) (K, 1, C, D) from input x (V, B, T, C) and output cotangent g (V, B, T', D).

  dW[k] = sum over (v, b, t') of x_pad[v, b, t' * stride + k]^T g[v, b, t']: one GEMM of the
  im2col matrix against g, accumulated over chunks of (v, b) rows so that each chunk's columns
  stay in cache.
  """
  v, b, frames, c = x.shape
  rows = v * b
  out_frames, d = g.shape[2], g.shape[-1]
  pad = (kernel_size - 1) // 2
  span = (out_frames - 1) * stride + 1
  count = _chunks(rows, out_frames * kernel_size * c * x.dtype.itemsize)
  xs = x.reshape(count, rows // count, frames, c)
  gs = g.reshape((count, -1, d))

  acc_dtype = jnp.promote_types(x.dtype, jnp.float32)

  def accumulate(i, total):
    xp = jnp.pad(xs[i], ((0, 0), (pad, pad), (0, 0)))
    cols = jnp.concatenate([xp[:, k:k + span:stride] for k in range(kernel_size)], axis=-1)
    return total + jnp.dot(cols.reshape(-1, kernel_size * c).T, gs[i],
                           preferred_element_type=acc_dtype)

  total = jax.lax.fori_loop(0, count, accumulate,
                            jnp.zeros((kernel_size * c, d), acc_dtype))
  return total.reshape(kernel_size, 1, c, d)


TEMPORAL_CONV_METHODS = ("auto", "direct", "spectral")
# "auto" takes the spectral form where its multiply-adds are under this share of the direct
# convolution's. Measured on CPU, 256 bodies x 25 joints, forward + VJP (README, "Benchmarks"):
# 0.32 (256 channels, T 13) 2.2-2.5x faster, 0.37 (64 channels, T 13) 1.7-2.3x, 0.47 (32
# channels, T 25) 1.1-1.6x over three runs (its forward slower in one), left direct; 1.03 (16
# channels, T 50) slower.
_SPECTRAL_MAX_COST_SHARE = 0.4


def temporal_conv(x: jax.Array, kernel: jax.Array, stride: int,
                  method: str = "auto") -> jax.Array:
  """'Same'-padded convolution over time: (V, B, T, C) * (K, 1, C, D) -> (V, B, T', D).

  T' = ceil(T / stride). `method` (config key model.temporal_conv):
    * "direct": lax.conv_general_dilated. On the CPU backend its VJP is `gemm_vjp_conv`'s;
      elsewhere XLA's own, since on GPU cuDNN's weight gradient is fast and the batch-chunked
      GEMMs are not (on an H200 they took 54% of a float32 MoCo step, on 3-9 of 132 SMs).
    * "spectral": `spectral_conv` on stride-1 layers with an odd kernel, "direct" on the others.
    * "auto": "spectral" on the CPU backend, in float32, where `spectral_cost_share` is under
      _SPECTRAL_MAX_COST_SHARE (on the default encoder: blocks 9 and 10, 64 and 256 channels at
      T' 13), "direct" everywhere else. GPUs keep cuDNN until the spectral form is measured there.
  Both forms compute the same function; they differ by float rounding.
  """
  if temporal_conv_form(x.shape[2], kernel.shape, stride, x.dtype, method) == "spectral":
    return spectral_conv(x, kernel)
  if jax.default_backend() == "cpu":
    return gemm_vjp_conv(x, kernel, stride)
  return _conv(x, kernel, stride)


def temporal_conv_form(frames: int, kernel_shape: tuple[int, ...], stride: int, dtype,
                       method: str = "auto") -> str:
  """The form ("direct" | "spectral") `temporal_conv` takes for an input of `frames` frames and
  `dtype`, a (K, 1, C, D) kernel and `stride`, on this backend."""
  if method not in TEMPORAL_CONV_METHODS:
    raise ValueError(f"config key model.temporal_conv={method!r}: expected one of "
                     f"{TEMPORAL_CONV_METHODS}")
  k, _, c, d = kernel_shape
  spectral = stride == 1 and k % 2 == 1 and (
      method == "spectral" or (
          method == "auto" and jax.default_backend() == "cpu" and dtype == jnp.float32
          and spectral_cost_share(frames, k, c, d) < _SPECTRAL_MAX_COST_SHARE))
  return "spectral" if spectral else "direct"


# --------------------------------------------------------------------------- spectral form
#
# The stride-1 temporal convolution is a correlation over T frames with a K-tap filter, so it
# is a product in the frequency domain: one (C, D) complex matrix product per frequency instead
# of K real ones per frame. The real DFT has F = L // 2 + 1 frequencies for a period L, and
# L = T + (K - 1) // 2 is enough: a correlation's wrapped-around terms then land outside the K
# taps (proof in `_spectral_matrices`). At the last block (T 13, K 9) that is 9 complex
# products against 13 x 9 real ones, with the DFTs as small matrix products over T.


def _spectral_period(frames: int, kernel_size: int) -> tuple[int, int]:
  period = frames + (kernel_size - 1) // 2
  return period, period // 2 + 1


def spectral_cost_share(frames: int, kernel_size: int, c: int, d: int) -> float:
  """Multiply-adds of `spectral_conv` over those of the direct convolution, per (b, v)."""
  _, freqs = _spectral_period(frames, kernel_size)
  spectral = 4 * freqs * c * d + 2 * freqs * frames * (c + d)
  return spectral / (frames * kernel_size * c * d)


@functools.lru_cache(maxsize=None)
def _spectral_matrices(frames: int, kernel_size: int) -> tuple[np.ndarray, ...]:
  """The real DFT (2F, T), its inverse restricted to the T output frames (T, 2F), and the
  filter's DFT (2, F, K) for a 'same' correlation of T frames with a K-tap filter.

  y[t] = sum_k w[k] x[t + k - p] with p = (K - 1) // 2 and x zero outside [0, T). Written as a
  circular correlation of period L, y[t] = sum_j x[j] w[j - t + p mod L]. For t, j in [0, T),
  j - t + p runs over [p + 1 - T, T - 1 + p]; its negative values wrap to [L + p + 1 - T, L - 1],
  clear of the taps [0, K - 1] when L >= T + p. Then Y[f] = X[f] * conj(H[f]) with
  H*[f] = sum_k w[k] exp(2 pi i f (k - p) / L).
  """
  period, freqs = _spectral_period(frames, kernel_size)
  pad = (kernel_size - 1) // 2
  angle = 2 * np.pi * np.outer(np.arange(freqs), np.arange(frames)) / period  # (F, T)
  dft = np.concatenate([np.cos(angle), -np.sin(angle)])  # rows: Re X[f], then Im X[f]
  # y[t] = (1 / L) sum_f c_f (Re Y[f] cos - Im Y[f] sin), c_f = 2 but for f = 0 and f = L / 2.
  weight = np.full(freqs, 2.0)
  weight[0] = 1.0
  if period % 2 == 0:
    weight[-1] = 1.0
  inverse = np.concatenate([(weight[:, None] * np.cos(angle)).T,
                            (-weight[:, None] * np.sin(angle)).T], axis=1) / period
  tap_angle = 2 * np.pi * np.outer(np.arange(freqs), np.arange(kernel_size) - pad) / period
  filter_dft = np.stack([np.cos(tap_angle), np.sin(tap_angle)])
  return dft, inverse, filter_dft


def spectral_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The stride-1, 'same' temporal convolution through the real DFT over time:
  (V, B, T, C) * (K, 1, C, D) -> (V, B, T, D), K odd; `_conv(x, kernel, 1)` up to rounding.

  Each frequency's complex product (A + iB)(P + iQ) is one real GEMM of [A, B] (V*B, 2C)
  against [[P, Q], [-Q, P]] (2C, 2D). Autodiff gives its VJP: the same three kinds of GEMMs.
  """
  v, b, frames, c = x.shape
  kernel_size, d = kernel.shape[0], kernel.shape[-1]
  if kernel_size % 2 == 0:
    raise ValueError(f"spectral_conv needs an odd temporal kernel, got {kernel_size}")
  dft, inverse, filter_dft = (jnp.asarray(m, x.dtype)
                              for m in _spectral_matrices(frames, kernel_size))
  freqs = filter_dft.shape[1]
  real, imag = jnp.einsum("rfk,kcd->rfcd", filter_dft, kernel[:, 0])  # (F, C, D) each
  mixing = jnp.concatenate([jnp.concatenate([real, imag], axis=-1),
                            jnp.concatenate([-imag, real], axis=-1)], axis=1)  # (F, 2C, 2D)
  spectrum = jnp.einsum("st,vbtc->svbc", dft, x)  # (2F, V, B, C)
  spectrum = spectrum.reshape(2, freqs, v * b, c).transpose(1, 2, 0, 3).reshape(
      freqs, v * b, 2 * c)
  product = jnp.einsum("fnc,fcd->fnd", spectrum, mixing)  # (F, V*B, 2D)
  product = product.reshape(freqs, v, b, 2, d).transpose(3, 0, 1, 2, 4).reshape(
      2 * freqs, v, b, d)
  return jnp.einsum("ts,svbd->vbtd", inverse, product)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def gemm_vjp_conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """`temporal_conv` with the CPU's VJP: the weight gradient as cache-sized GEMMs, the input
  gradient of a strided convolution as a stride-1 one. Equal to lax.conv_general_dilated."""
  return _conv(x, kernel, stride)


def _temporal_conv_fwd(x, kernel, stride):
  return _conv(x, kernel, stride), (x, kernel)


def _temporal_conv_bwd(stride, residuals, g):
  x, kernel = residuals
  g_full = g
  if stride > 1:
    # A strided output is every stride-th frame of the stride-1 output: spread the cotangent
    # onto those frames (zeros between) and take the fast stride-1 input gradient.
    frames = x.shape[2]
    last = (g.shape[2] - 1) * stride + 1
    g_full = jax.lax.pad(g, jnp.zeros((), g.dtype),
                         ((0, 0, 0), (0, 0, 0), (0, frames - last, stride - 1), (0, 0, 0)))
  dx = jax.vjp(lambda x_: _conv(x_, kernel, 1), x)[1](g_full)[0]
  dw = _weight_grad(x, g, kernel.shape[0], stride).astype(kernel.dtype)
  return dx, dw


gemm_vjp_conv.defvjp(_temporal_conv_fwd, _temporal_conv_bwd)


# Up to this many input channels (the first block's xyz), graph_conv gathers all subsets in one
# product and transforms them in one GEMM over (subset, channel): per-subset GEMMs with a
# contraction of 3 run 2.5-5x slower.
_GATHER_ONCE_MAX_CHANNELS = 4


def graph_conv(x: jax.Array, adjacency: jax.Array, kernel: jax.Array,
               bias: jax.Array) -> jax.Array:
  """ST-GCN spatial graph convolution on joint-major features: (V, B, T, C) -> (W, B, T, D).

  The parameters are a 1x1 convolution to K subsets (kernel (C, K*D) = [W_1 .. W_K], bias
  (K*D,) = [b_1 .. b_K]), followed by the aggregation with adjacency (K, V, W):
  out[w] = sum_k sum_v adjacency[k, v, w] (x[v] W_k + b_k). Both maps are linear, so each
  subset runs in the cheaper order: A_k^T (x W_k) where C >= D, (A_k^T x) W_k where C < D,
  with A_k^T x one (W, V) x (V, B*T*C) GEMM in this layout. The bias adds
  sum_k colsum(A_k)[w] b_k.
  """
  k, v, w = adjacency.shape
  _, b, t, c = x.shape
  d = kernel.shape[-1] // k
  kernels = kernel.reshape(c, k, d)
  # The subsets' products are summed in float32, so that a bfloat16 encoder rounds once per
  # product, as a single contraction over (subset, joint) would.
  acc_dtype = jnp.promote_types(x.dtype, jnp.float32)
  matmul = functools.partial(jnp.matmul, preferred_element_type=acc_dtype)
  # Named so that the benchmark's profile counts these matmuls as the graph conv's.
  with jax.named_scope("graph_conv"):
    joint_bias = adjacency.sum(axis=1).T @ bias.reshape(k, d)  # (W, D)
    if c <= _GATHER_ONCE_MAX_CHANNELS:
      gathered = jnp.einsum("kvw,vnc->wnkc", adjacency, x.reshape(v, b * t, c))
      out = matmul(gathered.reshape(w * b * t, k * c),
                   kernels.transpose(1, 0, 2).reshape(k * c, d))
    elif c < d:
      out = sum(matmul((adjacency[i].T @ x.reshape(v, b * t * c)).reshape(w * b * t, c),
                       kernels[:, i]) for i in range(k))
    else:
      out = sum(matmul(adjacency[i].T, (x.reshape(v * b * t, c) @ kernels[:, i]).reshape(
          v, b * t * d)) for i in range(k))
    return (out.reshape(w, b, t, d) + joint_bias[:, None, None, :]).astype(x.dtype)


def batch_major_graph_conv(x: jax.Array, adjacency: jax.Array, kernel: jax.Array,
                           bias: jax.Array) -> jax.Array:
  """`graph_conv` on batch-major features: (B, T, V, C) -> (B, T, W, D).

  Where C < D the aggregation runs first, on the narrower tensor:
  sum_k (A_k^T x) W_k + sum_k colsum(A_k) b_k.
  """
  k, c = adjacency.shape[0], x.shape[-1]
  d = kernel.shape[-1] // k
  with jax.named_scope("graph_conv"):
    if c >= d:
      y = (x @ kernel + bias).reshape(x.shape[:3] + (k, d))
      return jnp.einsum("btvkc,kvw->btwc", y, adjacency)
    gathered = jnp.einsum("btvc,kvw->btwkc", x, adjacency).reshape(x.shape[:3] + (k * c,))
    kernel_by_subset = kernel.reshape(c, k, d).transpose(1, 0, 2).reshape(k * c, d)
    joint_bias = adjacency.sum(axis=1).T @ bias.reshape(k, d)  # (W, D)
    return gathered @ kernel_by_subset + joint_bias
