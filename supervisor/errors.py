"""Errors a user can cause, each with the HTTP status the API answers with.

Every layer raises these for bad input (unknown image, name in use, bad
value); the API turns them into Docker's `{"message": ...}` bodies and the
CLI into exit code 125. Anything else escaping a layer is a bug.
"""

from __future__ import annotations


class CorralError(Exception):
    """A failure the user caused and can fix; `str(err)` is the message."""

    status: int = 500


class InvalidArgument(CorralError):
    status = 400


class NotFound(CorralError):
    status = 404


class Conflict(CorralError):
    status = 409


class NotModified(CorralError):
    status = 304


class StartFailed(CorralError):
    """The container's process could not be started (exec failed, ...).

    `exit_code` follows Docker: 127 command not found, 126 not executable,
    125 any other start failure.
    """

    status = 400

    def __init__(self, message: str, exit_code: int = 125) -> None:
        super().__init__(message)
        self.exit_code = exit_code
