"""Train-step benchmark: compile time, throughput, XLA cost analysis, roofline and profile.

  python -m actclr_jax.train.benchmark --batch_size=128 [--steps=5] [--profile]
      [--compute_dtype=bfloat16] [--accelerator=h100_sxm] [--config=configs/ntu60.py]

The step is built from --config (default configs/ntu60.py, the published NTU-60 setup; any
`--config.FIELD=value` overrides it); --batch_size, --frames, --layout and --compute_dtype
override its batch_size, data.frames, data.layout and model.compute_dtype when given.
For both step variants (plain MoCo v2 and ActCLR) on random inputs of the paper's shape
(N, 3, 50, V, M), on every local device, it prints:
  * compile seconds, and the median / min step time over --steps timed steps (after one warm-up);
  * samples/s, the step's FLOPs (XLA's cost analysis of the unoptimised module, which counts
    every convolution on every backend) and the compiled step's bytes accessed per sample, and
    the achieved GFLOP/s;
  * a roofline estimate for --accelerator: max(FLOPs / peak, bytes / bandwidth) per step, the
    step rate no implementation of this HLO can beat there (XLA's byte count comes from this
    backend's fusion decisions, so it is an estimate);
  * with --profile, where the time goes: one profiled step, its XLA ops grouped by class
    (temporal conv, graph conv, BatchNorm, RNG, augmentations, losses, optimizer, ...);
  * with --temporal_conv_forms, the direct and spectral temporal convolution (forward, and
    forward + VJP) on each distinct layer shape of the encoder, with the form "auto" picks;
  * with --gemm_ceiling, this machine's rate on one large float32 GEMM of the last block's
    im2col shape, and the step rate a step of the measured FLOPs would reach if all of it ran
    at that rate: a practical ceiling for the backend, measured in the same session.
The last line is all of it as JSON.
"""

from __future__ import annotations

if __name__ == "__main__":
  # First, before jax starts a thread: huge pages for XLA's step buffers, as in training.
  from actclr_jax import host_memory
  host_memory.reexec_with_huge_pages()

import collections
import glob
import gzip
import json
import os
import re
import statistics
import tempfile
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from actclr_jax import graph, host_memory, parallel
from actclr_jax.models import builder
from actclr_jax.models import convolutions
from actclr_jax.models import stgcn
from actclr_jax.train import state as state_lib
from actclr_jax.train import trainer

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """The command line's flags, defined only when run as a script: the module's functions are
  imported by tests beside modules that define flags of the same names."""
  # A path relative to the working directory, as main.py's --config: run from the repository root.
  config_flags.DEFINE_config_file("config", "configs/ntu60.py", "Config file of the step.",
                                  lock_config=True)
  flags.DEFINE_integer("batch_size", None, "Global batch size (default: the config's).")
  flags.DEFINE_integer("steps", 5, "Timed steps per variant (after one warm-up step).")
  flags.DEFINE_integer("frames", None, "T of the input (default: the config's data.frames).")
  flags.DEFINE_string("layout", None, "Skeleton layout (V) (default: the config's data.layout).")
  flags.DEFINE_integer("bodies", 2, "M of the input.")
  flags.DEFINE_enum("compute_dtype", None, ["float32", "bfloat16"],
                    "Encoder compute dtype (default: the config's model.compute_dtype).")
  flags.DEFINE_string("accelerator", "h100_sxm", "Roofline target: a key of ACCELERATORS.")
  flags.DEFINE_bool("profile", False, "Profile one step of each variant and print op classes.")
  flags.DEFINE_string("trace_dir", "", "With --profile, keep each variant's trace here "
                      "(TensorBoard / Perfetto) instead of a temporary folder.")
  flags.DEFINE_list("variants", ["moco", "actclr"], "Step variants to run.")
  flags.DEFINE_bool("gemm_ceiling", False, "Also time one large GEMM (the last block's im2col "
                    "shape at this batch) and print the step rate it would allow.")
  flags.DEFINE_bool("temporal_conv_forms", False, "Also time the temporal convolution's forms "
                    "(model.temporal_conv direct | spectral), forward and VJP, on each of the "
                    "encoder's distinct layer shapes at this batch, and print which 'auto' takes.")
  flags.DEFINE_list("inference_batch_sizes", [],
                    "Also time the inference-mode encoder (feature extraction, the monitor) at "
                    "these batch sizes, e.g. 64,128,256 (config key eval_batch_size).")


# Peak dense throughput and memory bandwidth. Source: NVIDIA H100 Tensor Core GPU datasheet
# (2023): H100 SXM5 80GB: FP32 67 TFLOPS, TF32 tensor 494.7 TFLOPS (989.4 with sparsity),
# BF16 tensor 989.4 TFLOPS (1979 with sparsity), HBM3 3.35 TB/s; H100 PCIe: FP32 51, TF32 378,
# BF16 756 TFLOPS, HBM2e 2.0 TB/s. NVIDIA H200 Tensor Core GPU datasheet (2024): H200 SXM 141GB:
# TF32 tensor 989 TFLOPS and BF16 tensor 1,979 TFLOPS with sparsity (half that dense, the
# H100's rates), HBM3e 4.8 TB/s. XLA on GPU runs float32 matmuls and convolutions as TF32 by
# default (jax_default_matmul_precision), so float32 uses the TF32 peak.
ACCELERATORS = {
    "h100_sxm": {"name": "NVIDIA H100 SXM5 80GB", "float32": 494.7e12, "bfloat16": 989.4e12,
                 "bandwidth": 3.35e12},
    "h100_pcie": {"name": "NVIDIA H100 PCIe 80GB", "float32": 378e12, "bfloat16": 756e12,
                  "bandwidth": 2.0e12},
    "h200_sxm": {"name": "NVIDIA H200 SXM 141GB", "float32": 494.7e12, "bfloat16": 989.4e12,
                 "bandwidth": 4.8e12},
}

# (class, substrings of the XLA op's source path) in match order: the first class that
# matches names the op.
OP_CLASSES = (
    ("actionlet", ("actionlet", "dissimilarity", "activation_map", "weighted_pool")),
    ("temporal conv", ("tcn_conv",)),
    ("graph conv", ("/gcn", "graph_conv")),
    ("batchnorm", ("_bn", "data_bn", "BatchNorm")),
    ("residual conv", ("res_conv",)),
    ("rng", ("Dropout", "_uniform", "bernoulli", "random_bits", "threefry", "closed_call")),
    ("relu / residual add", ("relu", "/add")),
    ("projector", ("projector",)),
    ("augmentations", ("shear", "rotate", "crop", "flip", "noise", "blur", "adain", "mix",
                       "partner", "_matrix", "matmul3", "augment", "mats", "_presence")),
    ("losses", ("info_nce", "similarity_mining", "log_softmax", "l2_normalize", "softmax",
                "bank")),
    ("optimizer / EMA", ("sgd", "ema", "optax", "apply_updates", "decayed", "trace",
                         "scale_by")),
)


def op_class(op_name: str) -> str:
  """The class of an XLA op from its metadata op_name (its JAX source path)."""
  for name, keys in OP_CLASSES:
    if any(k in op_name for k in keys):
      return name
  return "encoder other" if "encoder" in op_name else "other"


def profile_step(compiled, run, keep_dir: str = "") -> dict[str, float]:
  """Seconds per op class of one call of run() (which calls `compiled`), from a jax.profiler
  trace (kept in keep_dir when given). Ops that run concurrently both count, so the total can
  exceed the wall time."""
  hlo = compiled.as_text()
  op_names = dict(re.findall(r"^\s*%?([\w.\-]+) = [^\n]*?metadata=\{op_name=\"([^\"]*)\"", hlo,
                             re.M))
  with tempfile.TemporaryDirectory() as temporary_dir:
    trace_dir = keep_dir or temporary_dir
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      jax.block_until_ready(run())
    trace_file = sorted(glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"),
                                  recursive=True), key=os.path.getmtime)[-1]
    with gzip.open(trace_file) as f:
      events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  return seconds_per_class(events, op_names)


def seconds_per_class(events: list[dict], op_names: dict[str, str]) -> dict[str, float]:
  """Seconds per op class of a trace's complete ('X') events, given {HLO instruction: its
  metadata op_name}; GPU kernels that name no instruction are 'unattributed kernels'."""
  seconds = collections.Counter()
  for event in events:
    if event.get("ph") != "X":
      continue
    # CPU ops are named by their HLO instruction; a GPU kernel names it in args.hlo_op (a
    # library GEMM or convolution has its own kernel name there).
    args = event.get("args") or {}
    op = next((n for n in (event.get("name"), args.get("hlo_op")) if n in op_names), None)
    if op is not None:
      seconds[op_class(op_names[op])] += event.get("dur", 0) / 1e6
    elif "kernel_details" in args:
      seconds["unattributed kernels"] += event.get("dur", 0) / 1e6
  return dict(seconds.most_common())


def roofline(flops: float, bytes_accessed: float, batch: int, accelerator: str,
             dtype: str) -> dict:
  """The step rate bound on `accelerator` for a step of `flops` and `bytes_accessed`."""
  spec = ACCELERATORS[accelerator]
  compute_s, memory_s = flops / spec[dtype], bytes_accessed / spec["bandwidth"]
  step_s = max(compute_s, memory_s)
  return {"accelerator": spec["name"], "peak_flops": spec[dtype], "bandwidth": spec["bandwidth"],
          "compute_seconds": compute_s, "memory_seconds": memory_s,
          "bound": "memory" if memory_s > compute_s else "compute",
          "samples_per_second": batch / step_s}


def _first(cost):
  """A cost analysis as one dict (some jax versions return a list of one)."""
  return (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}


def benchmark_variant(steps_fn, config, model, tx, x, batch, variant_name: str) -> dict:
  state = state_lib.create_train_state(config, model, tx, x.mean(0), 0)
  state = jax.device_put(state, NamedSharding(batch["data"].sharding.mesh, P()))
  start = time.perf_counter()
  lowered = steps_fn[variant_name == "actclr"].lower(state, batch)
  compiled = lowered.compile()
  compile_seconds = time.perf_counter() - start
  # FLOPs of the step as written (before optimisation): on GPU the compiled module's count
  # leaves out the convolutions and GEMMs handed to cuDNN / cuBLAS (0.05 of 3.7 GFLOP per
  # sample on an H200). Bytes are the compiled module's: they depend on the backend's fusion.
  flops = float(_first(lowered.cost_analysis()).get("flops", 0.0))
  bytes_accessed = float(_first(compiled.cost_analysis()).get("bytes accessed", 0.0))
  box = [state]

  def run(executable=compiled):
    box[0], metrics = executable(box[0], batch)
    return metrics

  jax.block_until_ready(run())
  times = []
  for _ in range(FLAGS.steps):
    start = time.perf_counter()
    jax.block_until_ready(run())
    times.append(time.perf_counter() - start)
  median = statistics.median(times)
  n = config.batch_size
  result = {"compile_seconds": compile_seconds, "step_seconds_median": median,
            "step_seconds_min": min(times), "samples_per_second": n / median,
            "samples_per_second_best": n / min(times), "gflop_per_sample": flops / n / 1e9,
            "gbytes_per_sample": bytes_accessed / n / 1e9,
            "achieved_gflops": flops / median / 1e9,
            "roofline": roofline(flops, bytes_accessed, n, FLAGS.accelerator,
                                 config.model.compute_dtype)}
  if FLAGS.profile:
    keep_dir = os.path.join(FLAGS.trace_dir, variant_name) if FLAGS.trace_dir else ""
    try:
      profiled = compiled
      if jax.default_backend() == "gpu":
        # Inside a command buffer (a CUDA graph) every kernel reports the buffer as its HLO op:
        # profile a build without them, so that each kernel names its own op.
        profiled = lowered.compile(compiler_options={"xla_gpu_enable_command_buffer": ""})
        jax.block_until_ready(run(profiled))
      result["profile_seconds"] = profile_step(profiled, lambda: run(profiled), keep_dir)
    except Exception as error:  # pylint: disable=broad-except
      # A backend whose profiler is missing or writes another trace format still gets its timings.
      print(f"{variant_name}: profile failed ({type(error).__name__}: {error})", flush=True)
  return result


def gemm_gflops(rows: int, inner: int, cols: int, repeats: int = 3) -> float:
  """GFLOP/s of one jitted float32 (rows, inner) @ (inner, cols) product: the best of `repeats`
  timed calls after a warm-up."""
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.normal(size=(rows, inner)).astype(np.float32))
  b = jnp.asarray(rng.normal(size=(inner, cols)).astype(np.float32))
  matmul = jax.jit(jnp.dot)
  matmul(a, b).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a, b).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2.0 * rows * inner * cols / best / 1e9


def _median_seconds(fn, *args, repeats: int = 3) -> float:
  """The median wall time of `repeats` calls of fn(*args), after one warm-up call."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def temporal_conv_layer_shapes(model, frames: int, joints: int,
                               bodies_in_batch: int) -> list[tuple[tuple[int, ...], int, int]]:
  """((V, B, T, C) input, D, stride) of the encoder's temporal convolutions, without repeats."""
  shapes = []
  for i, features in enumerate(stgcn.block_channels(model.hidden_channels, model.out_channels),
                               start=1):
    stride = 2 if i in stgcn.STRIDE_2_BLOCKS else 1
    layer = ((joints, bodies_in_batch, frames, features), features, stride)
    if layer not in shapes:
      shapes.append(layer)
    frames = -(-frames // stride)
  return shapes


def benchmark_temporal_conv_forms(model, frames: int, joints: int, bodies_in_batch: int) -> list:
  """Median seconds of the forward and of forward + VJP of each temporal convolution form on
  each of the encoder's layer shapes (random float32 inputs)."""
  rows = []
  rng = np.random.default_rng(0)
  for shape, features, stride in temporal_conv_layer_shapes(model, frames, joints,
                                                            bodies_in_batch):
    k = model.temporal_kernel
    x = jnp.asarray(rng.normal(size=shape).astype(np.float32))
    kernel = jnp.asarray(rng.normal(size=(k, 1, shape[-1], features)).astype(np.float32))
    out_shape = shape[:2] + (-(-shape[2] // stride), features)
    g = jnp.asarray(rng.normal(size=out_shape).astype(np.float32))
    row = {"input": list(shape), "features": features, "stride": stride,
           "auto": convolutions.temporal_conv_form(shape[2], kernel.shape, stride, kernel.dtype)}
    methods = ("direct",)
    if stride == 1:  # the spectral form exists for stride-1 layers only
      methods = ("direct", "spectral")
      row["spectral_cost_share"] = convolutions.spectral_cost_share(shape[2], k, shape[-1],
                                                                    features)
    for method in methods:
      conv = lambda x, w, m=method: convolutions.temporal_conv(x, w, stride, m)
      forward = jax.jit(conv)
      vjp = jax.jit(lambda x, w, g, c=conv: jax.vjp(c, x, w)[1](g))
      row[method] = {"forward_seconds": _median_seconds(forward, x, kernel),
                     "vjp_seconds": _median_seconds(vjp, x, kernel, g)}
    rows.append(row)
    times = " | ".join(
        f"{m}: forward {row[m]['forward_seconds']:.3f} s, forward + VJP "
        f"{row[m]['vjp_seconds']:.3f} s" for m in methods)
    share = (f"spectral/direct multiply-adds {row['spectral_cost_share']:.2f}" if stride == 1
             else "strided: direct only")
    print(f"temporal conv {tuple(shape)} -> {features}, stride {stride}: {share} | {times} | "
          f"auto: {row['auto']}", flush=True)
  return rows


def benchmark_inference(model, state, shape, batch_sizes, repeats: int = 3) -> dict:
  """samples/s of the jitted inference-mode encoder (the pooled feature) on random (B, C, T, V,
  M) inputs for each batch size B: the median of `repeats` timed calls after one warm-up."""
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  encode = jax.jit(lambda v, x: builder.encode_features(v["params"], v["batch_stats"], x,
                                                        model=model))
  rates = {}
  for size in batch_sizes:
    x = jnp.asarray(np.random.default_rng(0).normal(size=(size, *shape[1:])) * 0.2, jnp.float32)
    rates[size] = size / _median_seconds(encode, variables, x, repeats=repeats)
    print(f"inference batch {size:4d}: {rates[size]:7.1f} samples/s", flush=True)
  return rates


def main(argv):
  del argv
  config = FLAGS.config
  if FLAGS.batch_size is not None:
    config.batch_size = FLAGS.batch_size
  if FLAGS.layout is not None:
    config.data.layout = FLAGS.layout
  if FLAGS.frames is not None:
    config.data.frames = FLAGS.frames
  if FLAGS.compute_dtype is not None:
    config.model.compute_dtype = FLAGS.compute_dtype
  dtype = config.model.compute_dtype
  if dtype not in ("float32", "bfloat16"):
    raise ValueError(f"config key model.compute_dtype={dtype!r}: expected float32 or bfloat16")
  unknown = sorted(set(FLAGS.variants) - {"moco", "actclr"})
  if unknown:
    raise ValueError(f"--variants: unknown {unknown}; expected moco and/or actclr")
  if FLAGS.accelerator not in ACCELERATORS:
    raise ValueError(f"--accelerator={FLAGS.accelerator!r}: expected one of {list(ACCELERATORS)}")
  batch_size, frames = config.batch_size, config.data.frames
  layout = graph.get_layout(config.data.layout)
  mesh = parallel.make_mesh()
  model = builder.build_model(config)
  tx = state_lib.build_optimizer(config, steps_per_epoch=1000)
  rng = np.random.default_rng(0)
  shape = (batch_size, 3, frames, layout.num_joints, FLAGS.bodies)
  x = (rng.normal(size=shape) * 0.2).astype(np.float32)
  batch = jax.device_put({"data": jnp.asarray(x),
                          "index": jnp.arange(batch_size, dtype=jnp.int32)},
                         NamedSharding(mesh, P("data")))
  steps_fn = trainer.jit_train_steps(config, model, tx, layout, mesh)
  results = {"devices": [str(d) for d in jax.devices()], "batch_size": batch_size,
             "input_shape": list(shape), "compute_dtype": dtype,
             "memory_layout": stgcn.memory_layout(config.model.memory_layout),
             "rng_impl": config.rng_impl, "jax": jax.__version__,
             "malloc_huge_pages": host_memory.huge_pages_in_malloc(
                 os.environ, host_memory.glibc_version(),
                 host_memory.transparent_huge_page_mode())}
  print(f"{jax.default_backend()}: {results['memory_layout']} encoder, {dtype}, batch "
        f"{batch_size}, input {tuple(shape)}, malloc huge pages "
        f"{'on' if results['malloc_huge_pages'] else 'off'}", flush=True)
  for name in FLAGS.variants:
    r = benchmark_variant(steps_fn, config, model, tx, x, batch, name)
    results[name] = r
    roof = r["roofline"]
    print(f"{name:7s} compile {r['compile_seconds']:6.1f} s | step {r['step_seconds_median']:7.3f} s"
          f" (min {r['step_seconds_min']:.3f}) | {r['samples_per_second']:7.1f} samples/s | "
          f"{r['gflop_per_sample']:.2f} GFLOP, {r['gbytes_per_sample']:.2f} GB per sample | "
          f"{r['achieved_gflops']:6.1f} GFLOP/s achieved", flush=True)
    print(f"        roofline on {roof['accelerator']} ({dtype}): "
          f"{roof['samples_per_second']:,.0f} samples/s, {roof['bound']}-bound "
          f"(compute {roof['compute_seconds'] * 1e3:.2f} ms, memory "
          f"{roof['memory_seconds'] * 1e3:.2f} ms per step)", flush=True)
    if "profile_seconds" in r:
      total = sum(r["profile_seconds"].values())
      for cls, sec in r["profile_seconds"].items():
        print(f"        {cls:22s} {sec:7.3f} s  {100 * sec / total:5.1f}%", flush=True)
  if FLAGS.gemm_ceiling:
    # The last block's temporal conv as im2col: (N*M*T'*V, 9*C) @ (9*C, C), C = out_channels.
    channels, frames_out = config.model.out_channels, -(-frames // 4)
    rows = batch_size * FLAGS.bodies * frames_out * layout.num_joints
    rate = gemm_gflops(rows, model.temporal_kernel * channels, channels)
    results["gemm_gflops"] = rate
    print(f"GEMM ({rows}, {model.temporal_kernel * channels}) @ "
          f"({model.temporal_kernel * channels}, {channels}): {rate:.1f} GFLOP/s", flush=True)
    for name in FLAGS.variants:
      ceiling = rate / results[name]["gflop_per_sample"]
      results[name]["gemm_ceiling_samples_per_second"] = ceiling
      print(f"        {name}: at that rate throughout, at most {ceiling:.1f} samples/s "
            f"(measured {results[name]['samples_per_second']:.1f}, "
            f"{100 * results[name]['samples_per_second'] / ceiling:.0f}%)", flush=True)
  if FLAGS.temporal_conv_forms:
    results["temporal_conv_forms"] = benchmark_temporal_conv_forms(
        model, frames, layout.num_joints, batch_size * FLAGS.bodies)
  if FLAGS.inference_batch_sizes:
    state = state_lib.create_train_state(config, model, tx, x.mean(0), config.seed)
    results["inference_samples_per_second"] = benchmark_inference(
        model, state, shape, [int(b) for b in FLAGS.inference_batch_sizes])
  print(json.dumps(results))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
