"""Tests of the ST-GCN encoder, the pooling functions, projector and classifier."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from actclr_jax import graph
from actclr_jax import models
from actclr_jax.models import builder
from configs import synthetic as synthetic_config

N = 2


def _key(seed: int) -> jax.Array:
  # rbg keys compile several times faster than threefry on CPU, which keeps this file fast.
  return jax.random.key(seed, impl="rbg")


def _input(layout: str, t: int, m: int, seed: int = 0) -> jax.Array:
  v = graph.get_layout(layout).num_joints
  return jax.random.normal(_key(seed), (N, 3, t, v, m), jnp.float32)


def _expected_frames(t: int) -> int:
  for _ in models.stgcn.STRIDE_2_BLOCKS:
    t = (t + 1) // 2
  return t


def _reference_conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """The temporal convolution in its textbook form: joint-major (V, B, T, C) moved to NHWC
  (B, T, V, C), a (K, 1) filter over T, 'same' padding, moved back."""
  pad = (kernel.shape[0] - 1) // 2
  y = jax.lax.conv_general_dilated(jnp.transpose(x, (1, 2, 0, 3)), kernel, (stride, 1),
                                   ((pad, pad), (0, 0)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return jnp.transpose(y, (2, 0, 1, 3))


@functools.lru_cache(maxsize=None)
def _contrastive(layout: str = "ntu", t: int = 50, m: int = 2):
  """Model, variables and a jitted apply for one input shape (jit once per shape)."""
  model = models.ContrastiveNet(layout=layout)
  x = _input(layout, t, m)
  variables = jax.jit(functools.partial(model.init, train=False))(_key(0), x)

  @functools.partial(jax.jit, static_argnames="train")
  def apply(variables, x, rng, train):
    if train:
      return model.apply(variables, x, train=True, rngs={"dropout": rng}, mutable=["batch_stats"])
    return model.apply(variables, x, train=False), {}

  return model, variables, apply


@pytest.mark.parametrize("layout,joints", [("ntu", 25), ("kinect_v1", 20), ("msr", 20)])
@pytest.mark.parametrize("m", [1, 2])
def test_output_shapes(layout, joints, m):
  # Shapes by abstract evaluation (no compile); test_forward_values runs the network for real.
  model = models.ContrastiveNet(layout=layout)
  for t in (50, 20):
    x = jax.ShapeDtypeStruct((N, 3, t, joints, m), jnp.float32)
    variables = jax.eval_shape(functools.partial(model.init, train=False), _key(0), x)
    out = jax.eval_shape(functools.partial(model.apply, train=False), variables, x)
    t_out = 13 if t == 50 else _expected_frames(t)
    assert out["dense"].shape == (N, m, 256, t_out, joints)
    assert out["feature"].shape == (N, 256)
    assert out["z"].shape == (N, 128)
    assert all(value.dtype == jnp.float32 for value in out.values())


def test_forward_values():
  _, variables, apply = _contrastive()
  out, _ = apply(variables, _input("ntu", 50, 2), _key(1), train=False)
  assert out["dense"].shape == (N, 2, 256, 13, 25)
  for value in out.values():
    assert np.all(np.isfinite(np.asarray(value)))
  # The encoder ends in a ReLU.
  assert np.all(np.asarray(out["dense"]) >= 0) and np.any(np.asarray(out["dense"]) > 0)


def test_wrong_joint_count_raises():
  model = models.STGCN(layout="kinect_v1")
  with pytest.raises(ValueError, match="kinect_v1"):
    jax.eval_shape(functools.partial(model.init, train=False), _key(0),
                   jnp.zeros((N, 3, 20, 25, 2)))


def test_parameter_count():
  x = jax.ShapeDtypeStruct((N, 3, 50, 25, 2), jnp.float32)
  shapes = jax.eval_shape(functools.partial(models.ContrastiveNet().init, train=False),
                          _key(0), x)
  encoder = models.count_params(shapes["params"]["encoder"])
  total = models.count_params(shapes["params"])
  print(f"NTU encoder parameters: {encoder:,}; encoder + projector: {total:,}")
  assert abs(encoder - 0.84e6) / 0.84e6 < 0.05
  # Projector 256 -> 256 -> 128 with biases.
  assert total - encoder == 256 * 256 + 256 + 256 * 128 + 128
  # One (3, V, V) edge-importance mask per block, and only when enabled.
  no_mask = jax.eval_shape(
      functools.partial(models.STGCN(edge_importance=False).init, train=False),
      _key(0), x)
  assert encoder - models.count_params(no_mask["params"]) == 10 * 3 * 25 * 25
  assert "edge_importance" not in no_mask["params"]["block1"]


def test_train_and_eval_modes():
  _, variables, apply = _contrastive()
  x = _input("ntu", 50, 2, seed=3)
  train_a, updates_a = apply(variables, x, _key(1), train=True)
  train_a2, _ = apply(variables, x, _key(1), train=True)
  train_b, _ = apply(variables, x, _key(2), train=True)
  np.testing.assert_array_equal(train_a["z"], train_a2["z"])
  assert not np.allclose(train_a["z"], train_b["z"])

  eval_a, _ = apply(variables, x, _key(1), train=False)
  eval_b, _ = apply(variables, x, _key(2), train=False)
  np.testing.assert_array_equal(eval_a["dense"], eval_b["dense"])
  # In eval mode a sample's output does not depend on the rest of the batch.
  eval_other, _ = apply(variables, x.at[1].set(0.0), _key(1), train=False)
  np.testing.assert_allclose(eval_other["z"][0], eval_a["z"][0], rtol=1e-5, atol=1e-6)
  assert not np.allclose(eval_other["z"][1], eval_a["z"][1])

  # Train mode updates every BatchNorm's running variance (the mean after a zero-mean
  # input and zero-init biases can stay ~0) and the input BN's running mean.
  old = jax.tree_util.tree_leaves_with_path(variables["batch_stats"])
  new = dict(jax.tree_util.tree_leaves_with_path(updates_a["batch_stats"]))
  assert len(old) == len(new) == 2 * (1 + 10 * 2 + 3)  # data_bn, 2 per block, 3 residual BNs
  for path, value in old:
    if jax.tree_util.keystr(path).endswith("['var']"):
      assert not np.allclose(value, new[path]), jax.tree_util.keystr(path)
  data_mean = updates_a["batch_stats"]["encoder"]["data_bn"]["mean"]
  # momentum 0.9: new running mean = 0.1 * batch mean (from zeros), over N*M*T per (V, C).
  batch_mean = jnp.transpose(x, (3, 1, 0, 2, 4)).reshape(25 * 3, -1).mean(-1)
  np.testing.assert_allclose(data_mean, 0.1 * batch_mean, rtol=1e-4, atol=1e-6)


def test_body_permutation():
  _, variables, apply = _contrastive()
  x = _input("ntu", 50, 2, seed=4)
  out, _ = apply(variables, x, _key(0), train=False)
  out_swapped, _ = apply(variables, x[..., ::-1], _key(0), train=False)
  np.testing.assert_allclose(out_swapped["dense"], out["dense"][:, ::-1], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out_swapped["feature"], out["feature"], rtol=1e-4, atol=1e-5)


def test_body_permutation_train_batch_stats():
  """In train mode (dropout off) the batch statistics are invariant to the body order too."""
  _, variables, _ = _contrastive()
  x = _input("ntu", 50, 2, seed=5)
  apply_train = jax.jit(functools.partial(models.ContrastiveNet(dropout=0.0).apply, train=True,
                                          mutable=["batch_stats"]))
  out, stats = apply_train(variables, x)
  out_swapped, stats_swapped = apply_train(variables, x[..., ::-1])
  np.testing.assert_allclose(out_swapped["feature"], out["feature"], rtol=1e-4, atol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(stats), jax.tree_util.tree_leaves(stats_swapped)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_graph_conv_is_local():
  """A one-block network: perturbing joint j changes exactly j's hop-1 neighbours."""
  layout = graph.get_layout("ntu")
  block = models.STGCNBlock(layout="ntu", features=8, residual=False)
  x = jax.random.normal(_key(0), (25, 1, 12, 3))  # joint-major (V, B, T, C)
  variables = jax.jit(functools.partial(block.init, train=False))(_key(1), x)
  # A random positive edge importance: locality must come from A, not from the mask's init.
  params = dict(variables["params"])
  params["edge_importance"] = jax.random.uniform(_key(2), (3, 25, 25), minval=0.5,
                                                 maxval=2.0)
  variables = {**variables, "params": params}
  apply = jax.jit(functools.partial(block.apply, train=False))
  base = apply(variables, x)
  neighbours = layout.smoothing_matrix() > 0
  for j in (layout.center, 0, 7, 19):
    moved = apply(variables, x.at[j].add(3.0))
    changed = np.abs(np.asarray(moved - base)).max(axis=(1, 2, 3)) > 1e-6
    np.testing.assert_array_equal(changed, neighbours[j], err_msg=f"joint {j}")


def test_weighted_pool():
  rng = np.random.default_rng(0)
  h = jnp.asarray(rng.normal(size=(2, 2, 6, 4, 5)).astype(np.float32))
  gap = models.global_average_pool(h)
  np.testing.assert_allclose(gap, np.asarray(h).mean(axis=(1, 3, 4)), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(models.weighted_pool(h, jnp.ones((2, 2, 4, 5))), gap,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(models.weighted_pool(h, jnp.full((2, 2, 4, 5), 0.3)), gap,
                             rtol=1e-4, atol=1e-6)
  one_hot = np.zeros((2, 2, 4, 5), np.float32)
  one_hot[:, 0, 1, 3] = 1.0
  one_hot[:, 1, 2, 0] = 1.0
  expected = 0.5 * (h[:, 0, :, 1, 3] + h[:, 1, :, 2, 0])
  np.testing.assert_allclose(models.weighted_pool(h, jnp.asarray(one_hot)), expected,
                             rtol=1e-5, atol=1e-6)
  # A body without actionlet adds nothing: the mean runs over the whole sample's actionlet.
  body0 = np.zeros((2, 2, 4, 5), np.float32)
  body0[:, 0, 1:3, 2] = 1.0
  np.testing.assert_allclose(models.weighted_pool(h, jnp.asarray(body0)),
                             np.asarray(h)[:, 0, :, 1:3, 2].mean(axis=-1), rtol=1e-5, atol=1e-6)
  # Weights that are zero everywhere give zero, not NaN.
  assert np.all(np.asarray(models.weighted_pool(h, jnp.zeros((2, 2, 4, 5)))) == 0)


def test_match_norm_keeps_the_direction_and_takes_the_reference_norm():
  feature = jnp.asarray([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])
  reference = jnp.asarray([[0.0, 10.0], [1.0, 1.0], [0.3, 0.4]])
  np.testing.assert_allclose(np.asarray(models.stgcn.match_norm(feature, reference)),
                             [[6.0, 8.0], [0.0, 0.0], [0.5, 0.0]], rtol=1e-6)


def test_project_method_and_param_names():
  model, variables, apply = _contrastive()
  assert set(variables["params"]) == {"encoder", "projector"}
  out, _ = apply(variables, _input("ntu", 50, 2), _key(0), train=False)
  z = model.apply(variables, out["feature"], method=models.ContrastiveNet.project)
  np.testing.assert_allclose(z, out["z"], rtol=1e-5, atol=1e-6)
  # Only the projector's params are needed to project.
  z_proj = models.Projector().apply({"params": variables["params"]["projector"]}, out["feature"])
  np.testing.assert_allclose(z_proj, out["z"], rtol=1e-5, atol=1e-6)
  # SAFP with uniform weights on the dense map is the GAP feature.
  dense = out["dense"]
  np.testing.assert_allclose(models.weighted_pool(dense, jnp.ones(dense.shape[:2] + dense.shape[3:])),
                             out["feature"], rtol=1e-4, atol=1e-6)


def test_classifier():
  _, pretrained, apply = _contrastive()
  x = _input("ntu", 50, 2)
  classifier = models.Classifier(num_classes=60)
  # Structure by abstract evaluation; values from the pretrained encoder and a random head
  # (saves compiling a second init).
  shapes = jax.eval_shape(functools.partial(classifier.init, train=False), _key(0), x)
  assert set(shapes["params"]) == {"encoder", "head"}
  assert (jax.tree_util.tree_structure(shapes["params"]["encoder"])
          == jax.tree_util.tree_structure(pretrained["params"]["encoder"]))
  assert shapes["params"]["head"]["kernel"].shape == (256, 60)
  head = {"kernel": 0.1 * jax.random.normal(_key(1), (256, 60)),
          "bias": jnp.linspace(-1.0, 1.0, 60)}
  variables = {
      "params": {"encoder": pretrained["params"]["encoder"], "head": head},
      "batch_stats": {"encoder": pretrained["batch_stats"]["encoder"]},
  }

  @jax.jit
  def run(variables, x):
    logits = classifier.apply(variables, x, train=False)
    features = classifier.apply(variables, x, train=False, method=models.Classifier.features)
    frames = classifier.apply(variables, x, train=False, method=models.Classifier.frame_features)
    return logits, features, frames

  logits, features, frames = run(variables, x)
  assert logits.shape == (N, 60)
  assert features.shape == (N, 256)
  assert frames.shape == (N, 13, 256)
  out, _ = apply(pretrained, x, _key(0), train=False)
  np.testing.assert_allclose(features, out["feature"], rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(frames.mean(axis=1), features, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(logits, features @ head["kernel"] + head["bias"], rtol=1e-4,
                             atol=1e-5)


@pytest.mark.parametrize("frames,stride", [(12, 1), (13, 1), (12, 2), (13, 2)])
def test_temporal_conv_and_its_gradient_match_lax_conv(frames, stride, monkeypatch):
  """The hand-written VJP against autodiff of lax.conv_general_dilated; a small chunk budget
  makes the weight gradient accumulate over several batch chunks."""
  monkeypatch.setattr(models.convolutions, "_WEIGHT_GRAD_CHUNK_BYTES", 2000)
  x = jax.random.normal(_key(0), (5, 4, frames, 3))
  kernel = jax.random.normal(_key(1), (9, 1, 3, 6)) * 0.3
  reference = lambda x, k: _reference_conv(x, k, stride)
  ours = lambda x, k: models.convolutions.temporal_conv(x, k, stride)
  np.testing.assert_allclose(ours(x, kernel), reference(x, kernel), rtol=1e-5, atol=1e-5)
  assert ours(x, kernel).shape == (5, 4, -(-frames // stride), 6)
  weights = jax.random.normal(_key(2), reference(x, kernel).shape)
  loss = lambda f: (lambda x, k: jnp.sum(jnp.sin(f(x, k)) * weights))
  got = jax.grad(loss(ours), argnums=(0, 1))(x, kernel)
  want = jax.grad(loss(reference), argnums=(0, 1))(x, kernel)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_temporal_conv_uses_the_gemm_vjp_on_cpu_only(monkeypatch):
  x, kernel = jnp.ones((5, 2, 8, 3)), jnp.ones((9, 1, 3, 4))
  trace = lambda: str(jax.make_jaxpr(
      lambda x, k: models.convolutions.temporal_conv(x, k, 2))(x, kernel))
  monkeypatch.setattr(models.stgcn.jax, "default_backend", lambda: "cpu")
  assert "custom_vjp" in trace()
  monkeypatch.setattr(models.stgcn.jax, "default_backend", lambda: "gpu")
  assert "custom_vjp" not in trace() and "conv_general_dilated" in trace()


@pytest.mark.parametrize("frames,kernel_size", [(13, 9), (12, 9), (50, 9), (6, 9), (7, 3), (1, 9)])
def test_spectral_conv_and_its_gradient_match_lax_conv_in_float64(frames, kernel_size):
  """The DFT form against lax.conv, odd and even periods L = T + (K - 1) // 2, clips shorter
  than the filter; in float64 the two agree to rounding (1e-10), so a wrong frequency, sign or
  period would show."""
  with jax.enable_x64(True):
    rng = np.random.default_rng(frames)
    x = jnp.asarray(rng.normal(size=(4, 3, frames, 5)))
    kernel = jnp.asarray(rng.normal(size=(kernel_size, 1, 5, 7)))
    reference = lambda x, k: _reference_conv(x, k, 1)
    got, want = models.convolutions.spectral_conv(x, kernel), reference(x, kernel)
    assert got.dtype == jnp.float64 and got.shape == want.shape == (4, 3, frames, 7)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    weights = jnp.asarray(rng.normal(size=want.shape))
    loss = lambda f: (lambda x, k: jnp.sum(jnp.sin(f(x, k)) * weights))
    got = jax.grad(loss(models.convolutions.spectral_conv), argnums=(0, 1))(x, kernel)
    want = jax.grad(loss(reference), argnums=(0, 1))(x, kernel)
    for g, w in zip(got, want):
      np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10)


def test_temporal_conv_method_picks_the_spectral_form_where_it_is_cheaper(monkeypatch):
  """'auto': spectral on CPU, float32, stride 1, wide layers (the encoder's blocks 9 and 10);
  direct for strided, narrow, even-kernel, bfloat16 and non-CPU; temporal_conv follows the form;
  a bad method names the config key."""
  monkeypatch.setattr(models.stgcn.jax, "default_backend", lambda: "cpu")
  form = models.convolutions.temporal_conv_form
  f32, last = jnp.float32, (9, 1, 256, 256)
  assert models.convolutions.spectral_cost_share(13, 9, 256, 256) < 0.4
  assert models.convolutions.spectral_cost_share(50, 9, 16, 16) > 1
  assert form(13, last, 1, f32) == form(13, (9, 1, 64, 64), 1, f32) == "spectral"
  assert form(50, (9, 1, 16, 16), 1, f32) == form(26, last, 2, f32) == "direct"
  assert form(13, last, 1, jnp.bfloat16) == form(13, last, 1, f32, "direct") == "direct"
  assert form(13, (8, 1, 256, 256), 1, f32, "spectral") == "direct"
  assert form(50, (9, 1, 16, 16), 1, f32, "spectral") == "spectral"
  with pytest.raises(ValueError, match="model.temporal_conv"):
    form(13, last, 1, f32, "fft")
  traced = lambda: str(jax.make_jaxpr(lambda x, k: models.convolutions.temporal_conv(x, k, 1))(
      jnp.ones((25, 2, 13, 256)), jnp.ones(last)))
  assert "conv_general_dilated" not in traced()
  monkeypatch.setattr(models.stgcn.jax, "default_backend", lambda: "gpu")
  assert form(13, last, 1, f32) == "direct" and "conv_general_dilated" in traced()


@jax.default_matmul_precision("highest")  # no TF32 on GPUs
def test_spectral_and_direct_encoders_agree():
  """The whole encoder with either form: same parameters, same outputs to float32 rounding."""
  x = _input("ntu", 20, 2)
  spectral = models.ContrastiveNet(temporal_conv="spectral", memory_layout="joint_major")
  direct = models.ContrastiveNet(temporal_conv="direct", memory_layout="joint_major")
  variables = jax.jit(functools.partial(direct.init, train=False))(_key(0), x)
  assert jax.tree_util.tree_structure(variables) == jax.tree_util.tree_structure(
      jax.jit(functools.partial(spectral.init, train=False))(_key(0), x))
  out = {name: jax.jit(functools.partial(model.apply, train=False))(variables, x)
         for name, model in (("spectral", spectral), ("direct", direct))}
  np.testing.assert_allclose(out["spectral"]["dense"], out["direct"]["dense"], rtol=1e-4,
                             atol=1e-5)


@pytest.mark.parametrize("c,d", [(3, 8), (8, 16), (8, 8), (8, 4)])
@jax.default_matmul_precision("highest")  # no TF32 on GPUs
def test_graph_conv_matches_its_definition(c, d):
  """All three orders (gather once, gather first, transform first), and the batch-major
  layout's two, against out[w] = sum_k sum_v A[k, v, w] (x[v] W_k + b_k), written as loops."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(25, 2, 4, c))
  adjacency = graph.get_layout("ntu").adjacency() * rng.uniform(0.5, 2.0, size=(3, 25, 25))
  kernel = rng.normal(size=(c, 3 * d))
  bias = rng.normal(size=(3 * d,))
  expected = np.zeros((25, 2, 4, d))
  for w in range(25):
    for k in range(3):
      for v in range(25):
        expected[w] += adjacency[k, v, w] * (x[v] @ kernel[:, k * d:(k + 1) * d]
                                             + bias[k * d:(k + 1) * d])
  args = [jnp.asarray(a, jnp.float32) for a in (x, adjacency, kernel, bias)]
  got = models.convolutions.graph_conv(*args)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
  batch_major = models.convolutions.batch_major_graph_conv(jnp.transpose(args[0], (1, 2, 0, 3)),
                                                    *args[1:])
  np.testing.assert_allclose(jnp.transpose(batch_major, (2, 0, 1, 3)), expected, rtol=1e-4,
                             atol=1e-4)


def _reference_encoder(params, stats, x, layout):
  """ST-GCN in eval mode as the definitions read, in the (B, T, V, C) layout: dense then
  aggregate, the (K, 1) temporal filter, BatchNorm from running statistics."""
  bn = lambda y, name, p, st: ((y - st[name]["mean"]) / jnp.sqrt(st[name]["var"] + 1e-5)
                               * p[name]["scale"] + p[name]["bias"])
  n, c, t, v, m = x.shape
  h = bn(jnp.transpose(x, (0, 4, 2, 3, 1)).reshape(n * m, t, v * c), "data_bn", params, stats)
  h = h.astype(jnp.float32).astype(x.dtype).reshape(n * m, t, v, c)  # data_bn's output dtype
  for i in range(1, models.stgcn.NUM_BLOCKS + 1):
    p, st = params[f"block{i}"], stats[f"block{i}"]
    stride = 2 if i in models.stgcn.STRIDE_2_BLOCKS else 1
    adjacency = jnp.asarray(graph.get_layout(layout).adjacency()) * p["edge_importance"]
    k = adjacency.shape[0]
    y = (h @ p["gcn"]["kernel"] + p["gcn"]["bias"]).reshape(h.shape[:3] + (k, -1))
    y = jax.nn.relu(bn(jnp.einsum("btvkd,kvw->btwd", y, adjacency), "tcn_bn1", p, st))
    y = jnp.transpose(_reference_conv(jnp.transpose(y, (2, 0, 1, 3)), p["tcn_conv"]["kernel"],
                                      stride), (1, 2, 0, 3)) + p["tcn_conv"]["bias"]
    y = bn(y, "tcn_bn2", p, st)
    if i > 1:
      if "res_conv" in p:
        y = y + bn(h[:, ::stride] @ p["res_conv"]["kernel"] + p["res_conv"]["bias"], "res_bn",
                   p, st)
      else:
        y = y + h
    h = jax.nn.relu(y)
  return jnp.transpose(h.reshape((n, m) + h.shape[1:]), (0, 1, 4, 2, 3))


@pytest.mark.parametrize("layout,method,memory_layout", [
    ("ntu", "direct", "joint_major"), ("msr", "spectral", "joint_major"),
    ("ntu", "direct", "batch_major")])
def test_encoder_matches_the_definition_layout_in_float64(layout, method, memory_layout):
  """Either memory layout's encoder against `_reference_encoder`, perturbed parameters and
  random BatchNorm statistics, computed in float64. The encoder returns float32, so the two
  agree to one float32 rounding of the same float64 numbers: a wrong transpose, stride or
  subset would show at 1e-2 or more."""
  with jax.enable_x64(True):
    v = graph.get_layout(layout).num_joints
    x = jax.random.normal(_key(0), (2, 3, 20, v, 2), jnp.float64)
    model = models.STGCN(layout=layout, dropout=0.0, dtype=jnp.float64, temporal_conv=method,
                         memory_layout=memory_layout)
    variables = jax.jit(functools.partial(model.init, train=False))(_key(1), x)
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda a: a + rng.normal(0, 0.1, size=a.shape), variables["params"])
    # Means near 0, so that the ReLUs keep about half of every layer (all-zero maps would agree
    # with anything); variances around 1.
    stats = jax.tree_util.tree_map_with_path(
        lambda path, a: jnp.asarray(rng.uniform(0.5, 1.5, size=a.shape))
        - (1.0 if path[-1].key == "mean" else 0.0), variables["batch_stats"])
    got = jax.jit(functools.partial(model.apply, train=False))(
        {"params": params, "batch_stats": stats}, x)
    want = jax.jit(functools.partial(_reference_encoder, layout=layout))(params, stats, x)
    assert got.shape == want.shape == (2, 2, 256, 5, v)
    assert 0.2 < float(jnp.mean(want > 0)) < 0.8
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want.astype(jnp.float32), rtol=2e-7, atol=1e-7)


def test_memory_layout_follows_the_backend(monkeypatch):
  """'auto' is joint-major on CPU and batch-major on GPUs (the faster on each); a bad name and
  the spectral form without the joint-major layout name their config keys; in train mode both
  layouts give the same outputs and BatchNorm statistics."""
  monkeypatch.setattr(models.stgcn.jax, "default_backend", lambda: "cpu")
  assert models.stgcn.memory_layout("auto") == "joint_major"
  assert models.stgcn.memory_layout("batch_major") == "batch_major"
  monkeypatch.setattr(models.stgcn.jax, "default_backend", lambda: "gpu")
  assert models.stgcn.memory_layout("auto") == "batch_major"
  assert models.stgcn.memory_layout("joint_major") == "joint_major"
  with pytest.raises(ValueError, match="model.memory_layout"):
    models.stgcn.memory_layout("nhwc")
  monkeypatch.undo()
  x = _input("msr", 12, 1)
  with pytest.raises(ValueError, match="model.temporal_conv='spectral'"):
    models.STGCN(layout="msr", temporal_conv="spectral", memory_layout="batch_major").init(
        _key(0), x, train=False)
  nets = {name: models.STGCN(layout="msr", dropout=0.0, memory_layout=name)
          for name in ("joint_major", "batch_major")}
  variables = jax.jit(functools.partial(nets["joint_major"].init, train=False))(_key(0), x)
  out = {name: jax.jit(functools.partial(net.apply, train=True, mutable=["batch_stats"]))(
      variables, x) for name, net in nets.items()}
  (dense_j, stats_j), (dense_b, stats_b) = out["joint_major"], out["batch_major"]
  np.testing.assert_allclose(dense_b, dense_j, rtol=1e-4, atol=1e-5)
  for a, b in zip(jax.tree.leaves(stats_b), jax.tree.leaves(stats_j)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_bfloat16_compute_keeps_float32_parameters_and_outputs():
  model = models.ContrastiveNet(dtype=jnp.bfloat16)
  x = _input("ntu", 20, 2)
  variables = jax.jit(functools.partial(model.init, train=False))(_key(0), x)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(variables))
  out = jax.jit(functools.partial(model.apply, train=False))(variables, x)
  assert all(value.dtype == jnp.float32 for value in out.values())
  reference = models.ContrastiveNet().apply(variables, x, train=False)
  rel = np.linalg.norm(out["feature"] - reference["feature"]) / np.linalg.norm(
      reference["feature"])
  assert 0 < rel < 0.05, rel


def test_init_variables_is_the_eager_init_compiled_once_per_model():
  """builder.init_variables (jitted, the model static) gives the eager model.init's variables
  bit for bit, and an equal model built again reuses its compiled program."""
  config = synthetic_config.get_config()
  config.model.hidden_channels, config.model.out_channels = 4, 32
  config.model.projection_dim = 16
  model = builder.build_model(config)
  key = jax.random.PRNGKey(3)
  x = _input("ntu", 20, 2)[:1]
  eager = model.init({"params": key, "dropout": key}, x, train=False)
  jitted = builder.init_variables(model, key, x)
  assert jax.tree.structure(eager) == jax.tree.structure(jitted)
  for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  compiled = builder.init_variables._cache_size()
  builder.init_variables(builder.build_model(config), key, x)
  assert builder.init_variables._cache_size() == compiled
