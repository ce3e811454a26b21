"""Errors the CLI reports as one line and a non-zero exit."""


class CliError(Exception):
    """A problem the user can fix (bad path, missing model, bad flag)."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code
