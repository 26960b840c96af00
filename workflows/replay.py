"""Deprecated entry point: replay moved to `ops.replay` (`python -m ops.replay`); kept for one release.

Workflow code must not import `core`, so this module only hands the command line over.
"""

import runpy
import sys

if __name__ == "__main__":
    sys.stderr.write("`python -m workflows.replay` is deprecated and will be removed: use `python -m ops.replay`\n")
    runpy.run_module("ops.replay", run_name="__main__", alter_sys=True)
