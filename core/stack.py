"""Deprecated entry point: the local stack moved to `devstack.stack` (`python -m devstack.stack`); kept for one release."""

import runpy
import sys

if __name__ == "__main__":
    sys.stderr.write("`python -m core.stack` is deprecated and will be removed: use `python -m devstack.stack`\n")
    runpy.run_module("devstack.stack", run_name="__main__", alter_sys=True)
