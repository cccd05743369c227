"""actclr_jax: ActCLR (CVPR 2023) in JAX/Flax.

Data flows through the subpackages in this order:
  data/        prepare/ raw files into arrays (offline); pipeline.py loads them with grain
  augment/     on-device skeleton transforms and MATS
  models/      the ST-GCN encoder and projector (encode)
  actionlet.py unsupervised actionlet from the static anchor
  losses.py    InfoNCE and similarity mining
  train/       train state, the jitted step, the trainer loop
  evaluate/    evaluators: KNN, linear, finetune, semi, transfer, ensemble, segmentation
"""

import os as _os

__version__ = "0.1.0"

# The GPU compiler of jax 0.11.2 aborts on the training step ("triton_tiling_propagation.cc:
# Check failed: subdim_size_accumulator == dim_size", on an H200); without Triton GEMM fusion it
# compiles and runs fast (README, GPU). XLA reads XLA_FLAGS when the backend starts, which comes
# after this import in every entry point. A value set by the user is kept.
if "xla_gpu_enable_triton_gemm" not in _os.environ.get("XLA_FLAGS", ""):
  _os.environ["XLA_FLAGS"] = " ".join(
      [_os.environ.get("XLA_FLAGS", ""), "--xla_gpu_enable_triton_gemm=false"]).strip()
