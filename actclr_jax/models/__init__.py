"""The ST-GCN encoder, projector and classifier (stgcn.py), and its convolutions' array forms
(convolutions.py)."""

from actclr_jax.models.stgcn import block_channels
from actclr_jax.models.stgcn import Classifier
from actclr_jax.models.stgcn import ContrastiveNet
from actclr_jax.models.stgcn import count_params
from actclr_jax.models.stgcn import frame_pool
from actclr_jax.models.stgcn import global_average_pool
from actclr_jax.models.stgcn import Projector
from actclr_jax.models.stgcn import STGCN
from actclr_jax.models.stgcn import STGCNBlock
from actclr_jax.models.stgcn import weighted_pool

__all__ = [
    "block_channels", "Classifier", "ContrastiveNet", "count_params", "frame_pool",
    "global_average_pool", "Projector", "STGCN", "STGCNBlock", "weighted_pool",
]
