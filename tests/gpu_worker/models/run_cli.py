"""`python -m tests.gpu_worker.models.run_cli ARGS…`: the model manager's CLI on a test catalogue.

Its entries are Hub repositories, reached through `HF_ENDPOINT` as a user's shell would set it.
"""

import sys

from gpu_worker.models.cli import configure_logging, main

from .entries import hub_entry

CATALOGUE = (
    hub_entry("big", "test/big"),
    hub_entry("tiny", "test/tiny", patterns=("config.json", "weights.safetensors")),
)

if __name__ == "__main__":
    configure_logging()
    sys.exit(main(catalogue=CATALOGUE))
