"""A PyTorch MoCo v2 step of the same encoder, to time against ours on the same machine.

Optional, and not imported by the package: it needs `pip install torch` (CPU wheel). Issue 8's
PyTorch figures were measured with the authors' code at another time, and absolute times drift
on shared machines by 1.5x, so a ratio needs both steps timed in one session. This is a
PyTorch reimplementation of what our MoCo v2 step computes (written from the ST-GCN
description, not the authors' code), in PyTorch's usual layout (N*M, C, T, V) with `conv2d`
and `einsum`:

- the quarter-width ST-GCN (data BN, 10 blocks, 16-16-16-16-32-32-32-64-64-256 channels,
  strides 2 at blocks 5 and 8, residuals from block 2, dropout 0), GAP, the 256-128 projector;
- a key forward of the momentum encoder, a query forward and backward, InfoNCE (tau 0.07) and
  similarity mining (tau_q 0.1, tau_k 0.04) over a 32768-entry bank, SGD (momentum 0.9, weight
  decay 1e-4), the EMA update and the enqueue; a shear of each view (our step shears both and
  crops the query; the authors' loader augments outside the timed step).

python -m actclr_jax.train.torch_reference --batch_size=128 --steps=3 [--threads=2]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from actclr_jax import graph
from actclr_jax.models import stgcn


class Block(nn.Module):
  """Graph conv (1x1 to K*D, einsum with A * importance), BN, ReLU, (9, 1) conv, BN, residual,
  ReLU on (B, C, T, V)."""

  def __init__(self, adjacency: torch.Tensor, c_in: int, c_out: int, stride: int,
               residual: bool):
    super().__init__()
    self.register_buffer("adjacency", adjacency)
    self.importance = nn.Parameter(torch.ones_like(adjacency))
    self.gcn = nn.Conv2d(c_in, c_out * adjacency.shape[0], 1)
    self.tcn = nn.Sequential(nn.BatchNorm2d(c_out), nn.ReLU(),
                             nn.Conv2d(c_out, c_out, (9, 1), (stride, 1), (4, 0)),
                             nn.BatchNorm2d(c_out))
    if not residual:
      self.residual = None
    elif c_in == c_out and stride == 1:
      self.residual = nn.Identity()
    else:
      self.residual = nn.Sequential(nn.Conv2d(c_in, c_out, 1, (stride, 1)), nn.BatchNorm2d(c_out))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    k = self.adjacency.shape[0]
    y = self.gcn(x)
    b, kc, t, v = y.shape
    y = torch.einsum("bkctv,kvw->bctw", y.view(b, k, kc // k, t, v),
                     self.adjacency * self.importance)
    y = self.tcn(y)
    if self.residual is not None:
      y = y + self.residual(x)
    return F.relu(y)


class Encoder(nn.Module):
  """(N, C, T, V, M) -> GAP feature (N, 256) -> projection (N, 128)."""

  def __init__(self, layout: str = "ntu", in_channels: int = 3, hidden: int = 16,
               out: int = 256, projection: int = 128):
    super().__init__()
    adjacency = torch.tensor(graph.get_layout(layout).adjacency())
    v = adjacency.shape[-1]
    self.data_bn = nn.BatchNorm1d(in_channels * v)
    channels = stgcn.block_channels(hidden, out)
    c_in, blocks = in_channels, []
    for i, c_out in enumerate(channels, start=1):
      blocks.append(Block(adjacency, c_in, c_out, 2 if i in stgcn.STRIDE_2_BLOCKS else 1, i > 1))
      c_in = c_out
    self.blocks = nn.ModuleList(blocks)
    self.projector = nn.Sequential(nn.Linear(out, out), nn.ReLU(), nn.Linear(out, projection))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    n, c, t, v, m = x.shape
    x = x.permute(0, 4, 3, 1, 2).reshape(n * m, v * c, t)
    x = self.data_bn(x).view(n * m, v, c, t).permute(0, 2, 3, 1).contiguous()
    for block in self.blocks:
      x = block(x)
    feature = x.mean(dim=(2, 3)).view(n, m, -1).mean(dim=1)
    return self.projector(feature)


def load_flax_variables(encoder: Encoder, params, batch_stats) -> None:
  """Copies a ContrastiveNet's flax `params` and `batch_stats` into `encoder` (same function)."""

  def put(module: nn.Module, weight, bias=None, transpose=None):
    weight = np.asarray(weight)
    module.weight.data = torch.tensor(weight.transpose(transpose) if transpose else weight)
    if bias is not None:
      module.bias.data = torch.tensor(np.asarray(bias))

  def put_bn(module: nn.Module, p, s):
    put(module, p["scale"], p["bias"])
    module.running_mean.data = torch.tensor(np.asarray(s["mean"]))
    module.running_var.data = torch.tensor(np.asarray(s["var"]))

  enc, stats = params["encoder"], batch_stats["encoder"]
  put_bn(encoder.data_bn, enc["data_bn"], stats["data_bn"])
  for i, block in enumerate(encoder.blocks, start=1):
    p, s = enc[f"block{i}"], stats[f"block{i}"]
    block.importance.data = torch.tensor(np.asarray(p["edge_importance"]))
    put(block.gcn, np.asarray(p["gcn"]["kernel"]).T[:, :, None, None], p["gcn"]["bias"])
    put_bn(block.tcn[0], p["tcn_bn1"], s["tcn_bn1"])
    put(block.tcn[2], p["tcn_conv"]["kernel"], p["tcn_conv"]["bias"], (3, 2, 0, 1))
    put_bn(block.tcn[3], p["tcn_bn2"], s["tcn_bn2"])
    if "res_conv" in p:
      put(block.residual[0], np.asarray(p["res_conv"]["kernel"]).T[:, :, None, None],
          p["res_conv"]["bias"])
      put_bn(block.residual[1], p["res_bn"], s["res_bn"])
  for index, name in ((0, "fc1"), (2, "fc2")):
    put(encoder.projector[index], params["projector"][name]["kernel"],
        params["projector"][name]["bias"], (1, 0))


def shear(x: torch.Tensor, amount: float = 0.5) -> torch.Tensor:
  """Per-sample random shear of the xyz axes: (N, 3, T, V, M)."""
  s = torch.empty(x.shape[0], 3, 3).uniform_(-amount, amount)
  s = s * (1 - torch.eye(3)) + torch.eye(3)
  return torch.einsum("nij,njtvm->nitvm", s, x)


def make_step(online: Encoder, offline: Encoder, bank: torch.Tensor, lr: float):
  """The MoCo v2 step on a batch (N, C, T, V, M): returns step(x) -> loss, which updates
  `online` (SGD), `offline` (EMA 0.999) and `bank` (K, 128) in place."""
  optimizer = torch.optim.SGD(online.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
  pointer = [0]

  def step(x: torch.Tensor) -> float:
    with torch.no_grad():
      z_k = F.normalize(offline(shear(x)), dim=1)
    z_q = F.normalize(online(shear(x)), dim=1)
    positive = (z_q * z_k).sum(1, keepdim=True)
    bank_sim = z_q @ bank.T
    logits = torch.cat([positive, bank_sim], 1) / 0.07
    infonce = F.cross_entropy(logits, torch.zeros(x.shape[0], dtype=torch.long))
    p_k = F.softmax(z_k @ bank.T / 0.04, dim=1)
    mining = -(p_k * F.log_softmax(bank_sim / 0.1, dim=1)).sum(1).mean()
    loss = infonce + mining
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
      for p_off, p_on in zip(offline.parameters(), online.parameters()):
        p_off.mul_(0.999).add_(p_on.detach(), alpha=0.001)
      rows = (pointer[0] + torch.arange(x.shape[0])) % bank.shape[0]
      bank[rows] = z_k
      pointer[0] = (pointer[0] + x.shape[0]) % bank.shape[0]
    return float(loss.detach())

  return step


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up")
  parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's own)")
  parser.add_argument("--frames", type=int, default=50)
  parser.add_argument("--bank_size", type=int, default=32768)
  args = parser.parse_args()
  if args.threads:
    torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  online = Encoder()
  offline = copy.deepcopy(online)
  for p in offline.parameters():
    p.requires_grad_(False)
  bank = F.normalize(torch.randn(args.bank_size, 128), dim=1)
  step = make_step(online, offline, bank, lr=0.1 * args.batch_size / 128)
  x = torch.tensor(np.random.default_rng(0).normal(
      size=(args.batch_size, 3, args.frames, 25, 2)).astype(np.float32) * 0.2)
  step(x)
  times = []
  for _ in range(args.steps):
    start = time.perf_counter()
    step(x)
    times.append(time.perf_counter() - start)
  median = statistics.median(times)
  print(f"torch moco step {median:.3f} s (min {min(times):.3f}) | "
        f"{args.batch_size / median:.1f} samples/s", flush=True)
  print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                    "batch_size": args.batch_size, "step_seconds_median": median,
                    "step_seconds_min": min(times),
                    "samples_per_second": args.batch_size / median}))


if __name__ == "__main__":
  main()
