"""actclr_jax: ActCLR (CVPR 2023) in JAX/Flax.

Data flows through the subpackages in this order:
  data/        prepare raw files into arrays, load them with grain (prepare.py, pipeline.py)
  augment.py   on-device skeleton transforms and MATS
  models/      the ST-GCN encoder and projector (encode)
  actionlet.py unsupervised actionlet from the static anchor
  losses.py    InfoNCE and similarity mining
  train/       train state, the jitted step, the trainer loop
  evaluate/    KNN, linear, finetune, semi, transfer, ensemble, segmentation
"""

__version__ = "0.1.0"
