"""Defaults shared by every config: the published ActCLR hyper-parameters (NOTES.md).

Each data-set config starts from `get_config()` here and overrides the data fields.
"""

import ml_collections

from actclr_jax import augment


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  # PRNG implementation of the train step's keys (dropout, augmentations). rbg draws XLA's
  # RngBitGenerator: 8% faster steps on CPU than threefry (the dropout masks), same statistics.
  config.rng_impl = "rbg"

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
  # Dropout inside blocks 2-10 during pretraining. The family uses 0.5; on MSR, 0 gave MoCo v2
  # 44.3 KNN / 47.3 linear against 38.8 / 43.2 with 0.5 (README, "Choosing the views").
  # Finetuning keeps 0.5 (eval.finetune_dropout).
  config.model.dropout = 0.0
  config.model.edge_importance = True
  config.model.projection_dim = 128
  # The encoder's compute dtype: float32 | bfloat16 (for accelerators). Parameters, the
  # optimizer, BatchNorm statistics, the projector, losses, bank and actionlet stay float32.
  config.model.compute_dtype = "float32"

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
  # Shuffle-BN on one device: the keys' BatchNorm statistics come from this many sub-batches of
  # a random permutation (1: off, keys and queries both normalised over the whole batch).
  config.moco.shuffle_bn_splits = 1

  config.loss = ml_collections.ConfigDict()
  config.loss.infonce_weight = 1.0
  config.loss.mining_weight = 1.0
  config.loss.tau_q = 0.1
  config.loss.tau_k = 0.04

  config.actionlet = ml_collections.ConfigDict()
  config.actionlet.enabled = True  # False: plain MoCo v2 throughout, with the same schedule
  config.actionlet.start_epoch = 300  # epochs of plain MoCo v2 before the actionlet is used
  # Phase 2 is a fresh lr schedule from start_epoch; its decays count from there.
  config.actionlet.lr_decay_epochs = (250,)
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
  config.knn_at_start = True  # monitor the untrained encoder too, as the baseline
  config.checkpoint_every_epochs = 5
  config.keep_checkpoints = 3
  config.eval_batch_size = 256

  # Evaluation protocols (`--mode` of main.py; NOTES.md, Evaluation). Learning rates are per
  # 128 samples and scaled linearly with the batch size, as in pretraining.
  config.eval = ml_collections.ConfigDict()
  config.eval.knn_ks = (10, 20, 40)
  config.eval.knn_temperature = 0.1
  config.eval.knn_feature = "encoder"  # encoder (pooled 256-d) | projector (128-d)
  config.eval.linear_lr = 3.0
  config.eval.linear_batch_size = 128
  config.eval.linear_epochs = 100
  config.eval.linear_decay_epochs = (80,)
  config.eval.linear_weight_decay = 0.0
  # Re-estimate the frozen encoder's BatchNorm statistics on clean training data before KNN,
  # linear and transfer (evaluate/bn_recalibration.py). Off in the family's protocol; the
  # comparison (python -m actclr_jax.compare) reports both.
  config.eval.bn_recalibration = False
  config.eval.bn_recalibration_batch_size = 128
  # Standardise cached features (train mean / std) before the linear and per-frame classifiers.
  config.eval.standardize_features = False
  config.eval.finetune_lr = 0.1
  config.eval.finetune_batch_size = 128
  config.eval.finetune_epochs = 80
  config.eval.finetune_decay_epochs = (30, 50)
  config.eval.finetune_weight_decay = 1e-4
  config.eval.finetune_dropout = 0.5  # the classifier's dropout in finetune / semi
  config.eval.semi_fraction = 0.1  # 0.01 or 0.1 of the labels, sampled per class
  config.eval.semi_seed = 0
  config.eval.source_workdir = ""  # transfer: the pretraining run whose encoder is evaluated
  config.eval.ensemble_source = "linear"  # whose saved val logits: linear | finetune | semi
  config.eval.ensemble_workdirs = ml_collections.ConfigDict(
      {"joint": "", "bone": "", "motion": ""})
  config.eval.ensemble_weights = ml_collections.ConfigDict(
      {"joint": 0.6, "bone": 0.6, "motion": 0.4})
  # Segmentation: untrimmed arrays under {segment_root or data.root}/untrimmed/{data.split}/
  # (PKU-MMD II), or synthetic concatenations of actions for the synthetic data set.
  config.eval.segment_root = ""
  config.eval.segment_window = 50  # frames per encoder window (the pretraining input length)
  config.eval.segment_stride = 25  # window step; overlapping windows' features are averaged
  config.eval.segment_lr = 3.0
  config.eval.segment_batch_size = 1024
  config.eval.segment_epochs = 30
  config.eval.segment_decay_epochs = (20,)
  config.eval.segment_train_frame_step = 1  # train on every k-th frame (memory on long sets)
  config.eval.segment_synthetic_sequences = 40  # per part; synthetic concatenations only
  config.eval.segment_synthetic_actions = 5  # actions per synthetic sequence
  config.eval.segment_synthetic_clip_frames = 60
  config.eval.visualize_samples = 4
  return config
