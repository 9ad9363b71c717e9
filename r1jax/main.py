"""Command line: `python -m r1jax.main --config=configs/<stage>.py[:preset] --workdir=DIR`.

Any config field can be overridden, e.g. `--config.optim.learning_rate=1e-5`.
All the work happens in library functions (`r1jax.run.run`) that notebooks call too.
"""
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Stage config file[:preset].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (resumes if it has checkpoints). "
                               "Default: runs/<config name>.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 for multi-host jax.distributed.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's id (multi-host).")


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax/absl INFO lines drown the progress bar
  config = _CONFIG.value
  from r1jax import runtime
  runtime.configure_cpu_from(config)  # before any backend starts (CPU device count, matmuls)
  import jax
  if _COORDINATOR.value or os.environ.get("R1JAX_DISTRIBUTED"):
    # On TPU pods / SLURM, jax.distributed discovers these itself when they are None.
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  workdir = _WORKDIR.value or os.path.join(
      "runs", os.path.splitext(os.path.basename(flags.FLAGS["config"].config_filename))[0])
  from r1jax import paths, run
  workdir = paths.resolve(workdir)
  logging.info("stage=%s workdir=%s devices=%s", config.stage, workdir, jax.devices())
  run.run(config, workdir)


def _parse_flags(argv):
  """absl's parser, plus one-line errors for config overrides that name no field.

  (ml_collections raises AttributeError deep inside flag parsing for a misspelt
  `--config.x.y`; users should see which field and the suggestion, not a traceback.)
  """
  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    msg = str(e).strip("'\"").replace("\\n", " ").replace("\\'", "'")
    bad = [a for a in argv[1:] if a.startswith("--config.")]
    sys.stderr.write(f"FATAL config error: {msg}\n  (overrides given: {' '.join(bad)})\n")
    sys.exit(2)


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main, flags_parser=_parse_flags)
