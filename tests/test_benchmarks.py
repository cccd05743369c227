"""The benchmark's pure parts (op classes of a trace, the roofline) and the package's GPU
compiler flag."""

import os
import subprocess
import sys

import pytest

from actclr_jax.train import benchmark

_OP_NAMES = {
    "fusion.1": "jit(train_step)/encoder/block10/tcn_conv/conv_general_dilated",
    "fusion.2": "jit(train_step)/encoder/block3/tcn_bn1/reduce_sum",
    "custom-call.7": "jit(train_step)/encoder/block2/gcn/dot_general",
}


def test_seconds_per_class_reads_cpu_ops_and_gpu_kernels():
  events = [
      {"ph": "X", "name": "fusion.1", "dur": 3000.0},  # a CPU op, named by its instruction
      {"ph": "X", "name": "loop_reduce_fusion", "dur": 2000.0,  # a GPU kernel of fusion.2
       "args": {"hlo_op": "fusion.2", "kernel_details": "grid:1,1,1"}},
      {"ph": "X", "name": "sm90_xmma_gemm_f32", "dur": 500.0,  # a library kernel
       "args": {"hlo_op": "command_buffer_1", "kernel_details": "grid:8,1,1"}},
      {"ph": "X", "name": "PjitFunction(jit(train_step))", "dur": 9000.0},  # host, not an op
      {"ph": "M", "name": "fusion.1", "dur": 1000.0},  # metadata, not a span
  ]
  got = benchmark.seconds_per_class(events, _OP_NAMES)
  assert got == pytest.approx({"temporal conv": 0.003, "batchnorm": 0.002,
                               "unattributed kernels": 0.0005})
  assert list(got) == ["temporal conv", "batchnorm", "unattributed kernels"]


def test_roofline_takes_the_slower_of_compute_and_memory():
  spec = benchmark.ACCELERATORS["h200_sxm"]
  # 1 TFLOP and 48 GB per step of 128: memory takes 10 ms, compute about 2 ms.
  got = benchmark.roofline(1e12, 48e9, 128, "h200_sxm", "float32")
  assert got["bound"] == "memory"
  assert got["memory_seconds"] == pytest.approx(48e9 / spec["bandwidth"])
  assert got["samples_per_second"] == pytest.approx(128 / 0.01)
  compute_bound = benchmark.roofline(1e14, 48e9, 128, "h200_sxm", "bfloat16")
  assert compute_bound["bound"] == "compute"
  assert compute_bound["samples_per_second"] == pytest.approx(128 / (1e14 / spec["bfloat16"]))


@pytest.mark.parametrize("user_flags,expected", [
    ("", "--xla_gpu_enable_triton_gemm=false"),
    ("--xla_dump_to=/tmp/x", "--xla_dump_to=/tmp/x --xla_gpu_enable_triton_gemm=false"),
    ("--xla_gpu_enable_triton_gemm=true", "--xla_gpu_enable_triton_gemm=true"),
])
def test_importing_the_package_turns_off_triton_gemm_unless_the_user_chose(user_flags, expected):
  env = dict(os.environ, XLA_FLAGS=user_flags)
  out = subprocess.run([sys.executable, "-c", "import os, actclr_jax; print(os.environ['XLA_FLAGS'])"],
                       env=env, capture_output=True, text=True, check=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert out.stdout.strip() == expected


def test_temporal_conv_layer_shapes_follow_the_encoder():
  """The shapes --temporal_conv_forms times: each block's convolution input (V, B, T, C), its
  output channels and stride, repeats once."""
  from actclr_jax import models
  shapes = benchmark.temporal_conv_layer_shapes(models.ContrastiveNet(), 50, 25, 4)
  assert shapes == [((25, 4, 50, 16), 16, 1), ((25, 4, 50, 32), 32, 2), ((25, 4, 25, 32), 32, 1),
                    ((25, 4, 25, 64), 64, 2), ((25, 4, 13, 64), 64, 1),
                    ((25, 4, 13, 256), 256, 1)]
