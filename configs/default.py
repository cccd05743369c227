"""Defaults shared by every config: the published ActCLR hyper-parameters (NOTES.md).

Each data-set config starts from `get_config()` here, picks its data set with
`common.set_dataset` and overrides what differs.
"""

import ml_collections

from actclr_jax.augment import config as augment_config
from configs import common


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  # PRNG implementation of the train step's keys (dropout, augmentations). rbg draws XLA's
  # RngBitGenerator: 8% faster steps on CPU than threefry (the dropout masks), same statistics.
  config.rng_impl = "rbg"

  config.data = ml_collections.ConfigDict()
  # NTU-60, xview, joint: dataset, root, split, stream, layout and num_classes from the
  # registry (actclr_jax/data/registry.py); each data-set config sets its own.
  common.set_dataset(config.data, "ntu60")
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
  # Finetuning keeps 0.5 (eval.finetune.dropout).
  config.model.dropout = 0.0
  config.model.edge_importance = True
  config.model.projection_dim = 128
  # The encoder's compute dtype: float32 | bfloat16 (for accelerators). Parameters, the
  # optimizer, BatchNorm statistics, the projector, losses, bank and actionlet stay float32.
  config.model.compute_dtype = "float32"
  # The temporal convolution's form: auto | direct | spectral (models/convolutions.py,
  # temporal_conv). The same function and parameters; "auto" takes the spectral form on CPU
  # where it needs fewer multiply-adds. Results before stop 25 were measured with "direct".
  config.model.temporal_conv = "auto"
  # The encoder's memory layout: auto | joint_major | batch_major (models/stgcn.py,
  # memory_layout). The same function and parameters; "auto" is joint-major on CPU and
  # batch-major on GPUs, each the faster there.
  config.model.memory_layout = "auto"

  # SGD as in every published number (the paper says Adam); lr per 128 samples.
  config.optimizer = "sgd"
  config.batch_size = 128
  config.learning_rate = 0.1
  config.momentum = 0.9
  config.weight_decay = 1e-4
  config.lr_decay_epochs = (250,)
  config.lr_decay_factor = 0.1
  # step: the decays at lr_decay_epochs (phase 2: actionlet.lr_decay_epochs), the published
  # schedule | cosine: each phase annealed from the base lr to 0 (MoCo v2's), no step decays;
  # 0.78 lower on the main job's standardised KNN over 4 seeds (README, "A cosine
  # learning-rate schedule").
  config.lr_schedule = "step"
  # Linear warmup over the first epochs of phase 1 (and actionlet.warmup_epochs of phase 2);
  # 0: none, the published schedule. 1 + 1 on the main job, two seeds: KNN level, actionlet IoU
  # 0.12 lower (README, "A learning-rate warmup").
  config.warmup_epochs = 0.0
  # 300 epochs of plain contrastive learning, then 350 with the actionlet.
  config.num_epochs = 650

  config.moco = ml_collections.ConfigDict()
  config.moco.bank_size = 32768
  config.moco.momentum = 0.999
  config.moco.temperature = 0.07
  # Shuffle-BN on one device: the keys' BatchNorm statistics come from this many sub-batches of
  # a random permutation (1: off, keys and queries both normalised over the whole batch).
  config.moco.shuffle_bn_splits = 1
  # Leave the bank's initial random rows out of both losses until real keys replace them. Off:
  # on the synthetic set it did not stop the first epoch's collapse (README, "The main job").
  config.moco.exclude_unfilled_bank = False

  config.loss = ml_collections.ConfigDict()
  config.loss.infonce_weight = 1.0
  # Similarity mining (Eq. 9) is computed and logged but off by default: on MSR, over 3 seeds,
  # InfoNCE alone gave ActCLR +12.5 KNN and +9.4 linear over InfoNCE + mining (README, "The two
  # losses"). `--config.loss.mining_weight=1.0` restores the paper's loss.
  config.loss.mining_weight = 0.0
  config.loss.tau_q = 0.1
  # Subtract each batch's mean projection from the queries and, separately, from the keys
  # before normalising them: none | phase2 (the actionlet phase only) | always. In phase 2 the
  # keys crowd into a narrow cone (README, "The keys crowd among themselves"), which InfoNCE
  # cannot see; centring removes the shared direction. Off, the paper's loss: phase2 collapsed
  # the main job's features and was level on MSR (README, "Centring the projections").
  config.loss.center_projections = "none"
  config.loss.tau_k = 0.04

  config.actionlet = ml_collections.ConfigDict()
  config.actionlet.enabled = True  # False: plain MoCo v2 throughout, with the same schedule
  config.actionlet.start_epoch = 300  # epochs of plain MoCo v2 before the actionlet is used
  # Phase 2 is a fresh lr schedule from start_epoch; its decays count from there.
  config.actionlet.lr_decay_epochs = (250,)
  config.actionlet.warmup_epochs = 0.0
  # The offline network's momentum in the ActCLR step; None: moco.momentum, as in the paper.
  # 0.995 (with 0.99 in phase 1) was 0.93 lower on the main job (README, "A slower offline
  # network in phase 2").
  config.actionlet.momentum = ml_collections.config_dict.placeholder(float)
  # True: phase 2 starts from the initial random bank instead of phase 1's keys (README, "A fresh
  # bank at the switch"). False here: on MSR it failed its screen (seeds 3-4: linear final
  # -4.40, +2.93) and was level over five seeds (+0.29, std 3.49; README, "A fresh bank at the
  # switch on MSR").
  config.actionlet.reset_bank = False
  config.actionlet.anchor = "dataset"  # dataset (Eq. 2) | batch (the authors' code)
  config.actionlet.smoothing = "adjacency"  # adjacency (Eq. 5) | parts (the authors' code)
  config.actionlet.grad_activation = "relu"  # sigma of Eq. 4: relu | identity
  config.actionlet.threshold = 0.5
  config.actionlet.mats = True
  config.actionlet.safp = True
  config.actionlet.safp_gap_mix = 0.0  # the authors' code: 0.5 * head(GAP) + 0.5 * head(SAFP)
  # The SAFP feature's scale before the projector: none (Eq. 8's weighted mean, the paper) | gap
  # (rescaled per sample to the norm of the same network's GAP feature). The features inside
  # the actionlet are 3-12x larger than the average the projector is trained on. gap changed
  # nothing on the main job and was lower on MSR's seed 0 (README, "The SAFP feature's scale").
  config.actionlet.safp_norm = "none"
  # gradient: the paper's actionlet. Ablations, applied before SAFP and MATS use the mask:
  # random (the same mask at random joints and frames, actionlet.relocate), other_sample (the
  # next sample's actionlet in the batch, actionlet.borrow).
  config.actionlet.placement = "gradient"

  # Transform parameters and views (NOTES.md, MATS table, and ours where measured): set, with
  # the measurement behind each value, in actclr_jax/augment/config.py, which also validates
  # them. Data-set configs override fields (configs/synthetic.py: the shear and the views).
  config.augment = augment_config.default_config()

  config.log_every_steps = 50
  # Diagnostic: log InfoNCE split into a class term and an instance term (README, "The phase-2
  # loss split into a class term and an instance term"). It reads the training labels for these
  # metrics only.
  config.log_class_split = False
  # Diagnostic: log the queries' and the keys' mean similarity to the newest and the oldest
  # quarter of the bank: how far the keys drift over its span, and how far the queries run ahead
  # of them (README, "How fast the keys drift").
  config.log_bank_age = False
  config.knn_every_epochs = 5  # the monitor (KNN, actionlet IoU); 0: never
  config.knn_at_start = True  # monitor the untrained encoder too (when the monitor is on)
  # Before training and at the end, the monitor also reports KNN with BatchNorm recalibrated on
  # clean training data: the untrained network's init statistics make its BatchNorms identities.
  config.knn_recalibrated_at_ends = True
  # The monitor's KNN at its points between those two too. False: there only the actionlet IoU
  # (data sets with a ground-truth actionlet; ~5 s against ~25 s on 2 cores for the synthetic
  # job), KNN before training and at the end.
  config.knn_between_ends = True
  config.checkpoint_every_epochs = 5
  # Also every N steps (0: only at epoch ends); each save holds the loader's position, so a
  # resume mid-epoch is exact. On CPU an epoch can take minutes.
  config.checkpoint_every_steps = 0
  config.keep_checkpoints = 3
  # Inference batch (features, monitor). On 2 CPU cores, paper-width encoder, 50 frames: 51
  # samples/s at 128, 40 at 64 and 256 (README, "Benchmarks").
  config.eval_batch_size = 128

  # Evaluation protocols (`--mode` of main.py; NOTES.md, Evaluation), one group per protocol.
  # Learning rates are per 128 samples and scaled linearly with the batch size, as in
  # pretraining.
  config.eval = ml_collections.ConfigDict()
  # How frozen-encoder features are computed for knn, linear, transfer (and segment's
  # standardisation).
  config.eval.features = ml_collections.ConfigDict()
  # Standardise features (train mean / std) before KNN and the linear / per-frame classifiers.
  config.eval.features.standardize = False
  # Re-estimate the frozen encoder's BatchNorm statistics on clean training data before KNN,
  # linear and transfer (evaluate/bn_recalibration.py). Off in the family's protocol; the
  # comparison (python -m actclr_jax.compare) reports both.
  config.eval.features.bn_recalibration = False
  # Which layers take the re-estimated statistics: all | data_bn | blocks (the others keep the
  # checkpoint's). A diagnostic: at init, data_bn and the blocks' layers are identities
  # (README, "Why the untrained network is so strong").
  config.eval.features.bn_recalibration_layers = "all"
  config.eval.features.bn_recalibration_batch_size = 128
  # Which of the checkpoint's two networks is evaluated (and finetuned): online (the trained
  # query encoder, the family's choice) | offline (the momentum encoder, an average of the
  # online one over its last ~1 / (1 - moco.momentum) steps). The two are equal at init.
  config.eval.features.network = "online"
  # KNN: the knn mode and the pretraining monitor (every k is reported by both).
  config.eval.knn = ml_collections.ConfigDict()
  config.eval.knn.ks = (10, 20, 40)
  config.eval.knn.temperature = 0.1
  config.eval.knn.feature = "encoder"  # encoder (pooled 256-d) | projector (128-d)
  config.eval.linear = ml_collections.ConfigDict()  # linear and transfer
  config.eval.linear.lr = 3.0
  config.eval.linear.batch_size = 128
  config.eval.linear.epochs = 100
  config.eval.linear.decay_epochs = (80,)
  config.eval.linear.weight_decay = 0.0
  config.eval.transfer = ml_collections.ConfigDict()
  config.eval.transfer.source_workdir = ""  # the pretraining run whose encoder is evaluated
  config.eval.finetune = ml_collections.ConfigDict()  # finetune and semi
  config.eval.finetune.lr = 0.1
  config.eval.finetune.batch_size = 128
  config.eval.finetune.epochs = 80
  config.eval.finetune.decay_epochs = (30, 50)
  config.eval.finetune.weight_decay = 1e-4
  config.eval.finetune.dropout = 0.5  # the classifier's dropout in finetune / semi
  config.eval.semi = ml_collections.ConfigDict()
  config.eval.semi.fraction = 0.1  # 0.01 or 0.1 of the labels, sampled per class
  config.eval.semi.seed = 0
  config.eval.ensemble = ml_collections.ConfigDict()
  config.eval.ensemble.source = "linear"  # whose saved val logits: linear | finetune | semi
  config.eval.ensemble.workdirs = ml_collections.ConfigDict(
      {"joint": "", "bone": "", "motion": ""})
  config.eval.ensemble.weights = ml_collections.ConfigDict(
      {"joint": 0.6, "bone": 0.6, "motion": 0.4})
  # Segmentation: untrimmed arrays under {segment.root or data.root}/untrimmed/{data.split}/
  # (PKU-MMD II), or synthetic concatenations of actions for the synthetic data set.
  config.eval.segment = ml_collections.ConfigDict()
  config.eval.segment.root = ""
  config.eval.segment.window = 50  # frames per encoder window (the pretraining input length)
  config.eval.segment.stride = 25  # window step; overlapping windows' features are averaged
  config.eval.segment.lr = 3.0
  config.eval.segment.batch_size = 1024
  config.eval.segment.epochs = 30
  config.eval.segment.decay_epochs = (20,)
  config.eval.segment.train_frame_step = 1  # train on every k-th frame (memory on long sets)
  config.eval.segment.synthetic_sequences = 40  # per part; synthetic concatenations only
  config.eval.segment.synthetic_actions = 5  # actions per synthetic sequence
  config.eval.segment.synthetic_clip_frames = 60
  config.eval.visualize = ml_collections.ConfigDict()
  config.eval.visualize.samples = 4
  return config
