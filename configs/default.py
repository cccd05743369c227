"""Defaults shared by every config: the published ActCLR hyper-parameters (NOTES.md).

Each data-set config starts from `get_config()` here and overrides the data fields.
"""

import ml_collections

from actclr_jax import augment


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  config.data.dataset = "ntu60"
  config.data.root = "data/ntu60"  # holds {split}/{train,val}_data.npy and _label.pkl
  config.data.split = "xview"
  config.data.stream = "joint"  # joint | motion | bone
  config.data.layout = "ntu"
  config.data.num_classes = 60
  config.data.frames = 50  # the paper's input length (preprocessed cache)
  config.data.center = True
  config.data.resize = True
  config.data.view_normalize = True
  config.data.train_part = "train"
  config.data.val_part = "val"
  config.data.worker_count = 0  # grain worker processes

  config.model = ml_collections.ConfigDict()
  config.model.hidden_channels = 16
  config.model.out_channels = 256
  config.model.dropout = 0.5
  config.model.edge_importance = True
  config.model.projection_dim = 128

  # SGD as in every published number (the paper says Adam); lr per 128 samples.
  config.optimizer = "sgd"
  config.batch_size = 128
  config.learning_rate = 0.1
  config.momentum = 0.9
  config.weight_decay = 1e-4
  config.lr_decay_epochs = (250,)
  config.lr_decay_factor = 0.1
  # 300 epochs of plain contrastive learning, then 350 with the actionlet.
  config.num_epochs = 650

  config.moco = ml_collections.ConfigDict()
  config.moco.bank_size = 32768
  config.moco.momentum = 0.999
  config.moco.temperature = 0.07

  config.loss = ml_collections.ConfigDict()
  config.loss.infonce_weight = 1.0
  config.loss.mining_weight = 1.0
  config.loss.tau_q = 0.1
  config.loss.tau_k = 0.04

  config.actionlet = ml_collections.ConfigDict()
  config.actionlet.start_epoch = 300  # epochs of plain MoCo v2 before the actionlet is used
  config.actionlet.anchor = "dataset"  # dataset (Eq. 2) | batch (the authors' code)
  config.actionlet.smoothing = "adjacency"  # adjacency (Eq. 5) | parts (the authors' code)
  config.actionlet.grad_activation = "relu"  # sigma of Eq. 4: relu | identity
  config.actionlet.threshold = 0.5
  config.actionlet.mats = True
  config.actionlet.safp = True
  config.actionlet.safp_gap_mix = 0.0  # the authors' code: 0.5 * head(GAP) + 0.5 * head(SAFP)

  # Transform parameters (NOTES.md, MATS table); see augment.default_config for the fields.
  config.augment = augment.default_config()

  config.log_every_steps = 50
  config.knn_every_epochs = 5
  config.knn_k = 20
  config.checkpoint_every_epochs = 5
  config.keep_checkpoints = 3
  config.eval_batch_size = 256
  return config
