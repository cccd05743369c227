"""The optional PyTorch reference step computes our encoder's function (skipped without torch)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch reference benchmark needs torch")

from actclr_jax.models import stgcn  # pylint: disable=g-import-not-at-top
from actclr_jax.train import torch_reference  # pylint: disable=g-import-not-at-top


def test_reference_encoder_matches_ours_in_inference_mode():
  model = stgcn.ContrastiveNet()
  x = np.random.default_rng(0).normal(size=(2, 3, 16, 25, 2)).astype(np.float32) * 0.3
  variables = model.init(jax.random.PRNGKey(1), jnp.asarray(x), train=False)
  # Non-trivial BN statistics and importances, so that a swapped tensor cannot pass.
  rng = np.random.default_rng(2)
  variables = jax.tree_util.tree_map(
      lambda a: a * (1 + 0.2 * rng.random(a.shape)).astype(np.float32), variables)
  ours = model.apply(variables, jnp.asarray(x), train=False)["z"]

  encoder = torch_reference.Encoder()
  torch_reference.load_flax_variables(encoder, variables["params"], variables["batch_stats"])
  assert sum(p.numel() for p in encoder.parameters()) == stgcn.count_params(variables["params"])
  with torch.no_grad():
    theirs = encoder.eval()(torch.tensor(x)).numpy()
  np.testing.assert_allclose(theirs, np.asarray(ours), rtol=1e-3, atol=1e-4)


def test_reference_step_updates_ema_and_bank():
  torch.manual_seed(0)
  online = torch_reference.Encoder()
  offline = torch_reference.Encoder()
  offline.load_state_dict(online.state_dict())
  before = [p.detach().clone() for p in offline.parameters()]
  bank = torch.nn.functional.normalize(torch.randn(64, 128), dim=1)
  untouched = bank[8:].clone()
  step = torch_reference.make_step(online, offline, bank, lr=0.05)
  assert np.isfinite(step(torch.randn(8, 3, 16, 25, 2) * 0.2))
  moved = 0.0
  for old, new, on in zip(before, offline.parameters(), online.parameters()):
    torch.testing.assert_close(new, 0.999 * old + 0.001 * on.detach())
    moved = max(moved, float((on.detach() - old).abs().max()))
  assert moved > 0  # SGD changed the online encoder
  torch.testing.assert_close(bank[:8].norm(dim=1), torch.ones(8))
  torch.testing.assert_close(bank[8:], untouched)
