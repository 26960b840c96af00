"""The errors a model backend raises: broken weights (never retried) and failed or slow model calls."""

from temporalio.exceptions import ApplicationError

from schemas import names

MISSING_WEIGHTS = names.ERR_MISSING_WEIGHTS
BACKEND_FAILED = names.ERR_BACKEND_FAILED
BACKEND_TIMEOUT = "BackendTimeout"


def missing_weights(message: str) -> ApplicationError:
    """A configured model path is missing or broken: retrying cannot help, so the error is non-retryable.

    Args:
        message: What is wrong, naming the path (and the setting that points at it).

    Returns:
        `ApplicationError(type=names.ERR_MISSING_WEIGHTS, non_retryable=True)`.
    """
    return ApplicationError(message, type=MISSING_WEIGHTS, non_retryable=True)


def backend_failed(message: str, non_retryable: bool = False) -> ApplicationError:
    """A model call failed (a crash, an out-of-memory, a rejected request).

    Args:
        message: What failed, with the tool's own last words when it has any.
        non_retryable: True when the same input would fail again (e.g. no output for this input).

    Returns:
        `ApplicationError(type=names.ERR_BACKEND_FAILED)`.
    """
    return ApplicationError(message, type=BACKEND_FAILED, non_retryable=non_retryable)


def backend_timeout(message: str) -> ApplicationError:
    """A model call ran past our own timeout; a retry may land on a less busy GPU or service."""
    return ApplicationError(message, type=BACKEND_TIMEOUT)
