"""Errors that retrying cannot fix; the activities turn them into non-retryable `ApplicationError`s."""


class InvalidInputError(ValueError):
    """A training input is unusable (undecodable, too small, silent, missing); the message names it."""


class MissingWeightsError(RuntimeError):
    """The configured base model directory is missing or broken; the message names the path."""
