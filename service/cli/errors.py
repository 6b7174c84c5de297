"""The command line's own refusal, in the family every command's errors belong to."""

from __future__ import annotations

from db.errors import EasgdError


class CliError(EasgdError):
    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.exit_code = code
