"""Entry point of `python -m gpu_worker.models`."""

import sys

from gpu_worker.models.cli import configure_logging, main

if __name__ == "__main__":
    configure_logging()
    sys.exit(main())
