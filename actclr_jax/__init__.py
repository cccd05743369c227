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

__version__ = "0.1.0"
