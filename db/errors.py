"""The one family of errors a user can act on.

Each carries how the command line exits and how the REST API answers, so that each maps the
whole family in one place and a new error cannot fall through to a traceback or a 500. It lives in
`db` because every other package may import `db`, and `db` imports nothing of ours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from db.entities import LeaseRecord


class EasgdError(Exception):
    """Something the user can fix: the message says what is wrong, what to do and what was
    received. `exit_code` 2 means bad input, 1 a failure of the system."""

    exit_code = 2
    http_status = 400

    def cli_message(self) -> str:
        """The line after `easgd: ` on the command line."""
        return str(self)


class StoreError(EasgdError, ValueError):
    """Bad input to the store: says what, what to do, and what was received."""

    http_status = 422


class NotFound(EasgdError, LookupError):
    http_status = 404


class StoreNotInitialized(EasgdError, RuntimeError):
    exit_code = 1
    http_status = 503


class InvalidTransition(EasgdError, RuntimeError):
    http_status = 409


class LeaseLost(EasgdError, RuntimeError):
    """The caller no longer holds the scheduler lease: another service may be scheduling."""

    exit_code = 1
    http_status = 409


class LeaseHeld(EasgdError, RuntimeError):
    """Another holder has the lease and it has not expired."""

    http_status = 409

    def __init__(self, lease: LeaseRecord):
        super().__init__(
            f"lease {lease.name!r} is held by {lease.holder} (pid {lease.pid} on "
            f"{lease.hostname}) until {lease.expires_at:.0f}"
        )
        self.lease = lease
