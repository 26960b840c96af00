"""How the operator CLIs end: with their exit code, even after a failed Temporal connect."""

import os
import sys
from typing import NoReturn

UNREACHABLE = 2  # exit code when the Temporal server cannot be reached


def exit_with(code: int) -> NoReturn:
    """Exit with `code`.

    temporalio 1.35 aborts the interpreter at shutdown after a failed connect ("PyGILState_Release:
    thread state ... must be current"), turning exit code 2 into a SIGABRT; after one, the
    finalisation that trips it is skipped.
    """
    if code == UNREACHABLE:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
