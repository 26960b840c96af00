"""The one error the model manager raises: a sentence for the user and the exit status it maps to."""

USAGE = 2  # the command line asked for something impossible (unknown name, licence not accepted)
FAILED = 1  # the work failed (network, refused download, no space, hash mismatch)
INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class ModelsError(Exception):
    """A failure the user can act on; `str(err)` says what happened and what to do."""

    def __init__(self, message: str, exit_code: int = FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code
