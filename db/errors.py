"""The one family of errors a user can act on.

Each carries how the command line exits and how the REST API answers, so that each maps the
whole family in one place and a new error cannot fall through to a traceback or a 500. It lives in
`db` because every other package may import `db`, and `db` imports nothing of ours.
"""

from __future__ import annotations


class EasgdError(Exception):
    """Something the user can fix: the message says what is wrong, what to do and what was
    received. `exit_code` 2 means bad input, 1 a failure of the system."""

    exit_code = 2
    http_status = 400

    def cli_message(self) -> str:
        """The line after `easgd: ` on the command line."""
        return str(self)
