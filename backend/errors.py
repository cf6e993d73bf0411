"""Errors the user should see as one clear line (no traceback).

Every error that reaches a user names the file it concerns (when there is one)
and what is wrong with it. The CLI prints `str(err)` to stderr and exits with
`err.exit_code`; the JSON-lines server sends `err.to_json()`.
"""
from __future__ import annotations


class FaceForgeError(Exception):
    """Base class: a problem we can explain to the user in one line."""

    code = "error"
    exit_code = 1

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def to_json(self) -> dict:
        return {"code": self.code, "message": str(self), "path": self.path}


class InputError(FaceForgeError):
    """A bad input file or folder (missing, unreadable, not an image...)."""

    code = "bad_input"
    exit_code = 2


class NoFaceError(InputError):
    code = "no_face"


class SetupError(FaceForgeError):
    """Missing or corrupt weights, missing packages, wrong environment."""

    code = "setup"
    exit_code = 3


class OutputError(FaceForgeError):
    """The result bundle could not be written (permissions, full disk)."""

    code = "output"
    exit_code = 4


class CancelledError(FaceForgeError):
    code = "cancelled"
    exit_code = 130
