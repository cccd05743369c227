"""`python -m actclr_jax.data.prepare DATASET --out_dir=OUT ...`: see `cli.py`."""

import sys

from actclr_jax.data.prepare import cli

if __name__ == "__main__":
  sys.exit(cli.main())
