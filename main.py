"""ActCLR entry point.

  python main.py --config=configs/ntu60.py:xview,joint --workdir=runs/ntu60 [--mode=pretrain]
  python main.py --config=configs/ntu60.py:xview,joint --workdir=runs/ntu60 --mode=linear

Every mode but pretrain runs that evaluator of the checkpoint in --workdir
(actclr_jax.evaluate.evaluators) and writes workdir/eval/<mode>.json.

The config is an ml_collections config file; any field can be overridden on the command
line, e.g. --config.batch_size=64 --config.data.root=/data/ntu60.
"""

if __name__ == "__main__":
  # First, before jax starts a thread: huge pages for XLA's step buffers (host_memory).
  from actclr_jax import host_memory
  host_memory.reexec_with_huge_pages()

import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from actclr_jax import logs
from actclr_jax.data import io
from actclr_jax.evaluate import evaluators
from actclr_jax.train import checkpoints
from actclr_jax.train import trainer

MODES = ("pretrain",) + evaluators.MODES

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
flags.DEFINE_enum("mode", "pretrain", MODES, "What to run.")
flags.DEFINE_bool("distributed", None,
                  "Call jax.distributed.initialize() (multi-host). Default: when the environment "
                  "names a coordinator (JAX_COORDINATOR_ADDRESS, or a multi-task SLURM / Open MPI job).")
flags.DEFINE_bool("library_logs", False,
                  "Show the INFO lines of orbax and grain (checkpoint and loader internals).")
config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def _wants_distributed() -> bool:
  if FLAGS.distributed is not None:
    return FLAGS.distributed
  env = os.environ
  return bool(env.get("JAX_COORDINATOR_ADDRESS")
              or int(env.get("SLURM_NTASKS", "1")) > 1
              or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.library_logs:
    logs.quiet_library_logs()
  if _wants_distributed():
    jax.distributed.initialize()
  logging.info("JAX process %d/%d, local devices: %s", jax.process_index(), jax.process_count(),
               jax.local_devices())
  config = FLAGS.config
  try:
    if FLAGS.mode == "pretrain":
      trainer.train_and_evaluate(config, FLAGS.workdir)
    else:
      evaluators.run(FLAGS.mode, config, FLAGS.workdir)
  except (checkpoints.CheckpointError, io.DataError) as error:
    # These name the file or directory at fault; a traceback would only bury it.
    logging.error("%s", error)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
