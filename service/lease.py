"""This service's hold on the store's one scheduler lease.

Only the holder reconciles and launches: two services on one store would otherwise each count
only their own jobs against the same slots and GPUs. The store checks the lease again inside
each launch's claim.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
import time

import psutil

from db.entities import LeaseRecord
from db.errors import EasgdError, LeaseHeld
from db.store import Store
from service.processes import IsSameProcess
from service.settings import ServiceSettings


class SchedulerBusy(EasgdError, RuntimeError):
    """Another live service holds this store's scheduler lease."""

    http_status = 409

    def __init__(self, lease: LeaseRecord):
        super().__init__(
            f"another easgd service ({lease.holder}, pid {lease.pid} on {lease.hostname}) "
            "schedules jobs from this store; stop it, or use another EASGD_HOME/EASGD_DB_URL"
        )
        self.lease = lease


class SchedulerLease:
    def __init__(self, store: Store, settings: ServiceSettings, is_same_process: IsSameProcess):
        """`is_same_process` tells whether a holder on this host still lives."""
        self.store = store
        self.settings = settings
        self.token: str | None = None
        self._is_same_process = is_same_process
        self._renewed = 0.0
        self._hostname = socket.gethostname()

    @property
    def held(self) -> bool:
        return self.token is not None

    def acquire(self) -> LeaseRecord:
        """Become this store's one scheduler, or raise SchedulerBusy naming the one there is.

        A holder on this host whose process is gone (killed -9) is replaced at once; one
        elsewhere only once its lease has expired.
        """
        token = self.token or secrets.token_hex(16)
        me = os.getpid()
        try:
            lease = self.store.take_lease(
                holder=self.settings.url,
                token=token,
                pid=me,
                pid_start_time=psutil.Process(me).create_time(),
                hostname=self._hostname,
                ttl=self.settings.lease_seconds,
                holder_gone=self._holder_gone,
            )
        except LeaseHeld as exc:
            raise SchedulerBusy(exc.lease) from None
        self.token, self._renewed = token, time.monotonic()
        return lease

    def _holder_gone(self, lease: LeaseRecord) -> bool:
        return lease.hostname == self._hostname and not self._is_same_process(
            lease.pid, lease.pid_start_time
        )

    def keep(self) -> bool:
        """Renew the lease, or take it back; True when it was taken back, which means another
        service may have launched jobs meanwhile: the caller adopts them before any launch.

        Renewing succeeds only while the row still carries our random token, that is while no
        other service has held the lease since.
        """
        if time.monotonic() - self._renewed < self.settings.lease_seconds / 6:
            return False
        if self.token and self.store.renew_lease(self.token, self.settings.lease_seconds):
            self._renewed = time.monotonic()
            return False
        lost = self.token is not None
        self.token = None
        try:
            self.acquire()
        except SchedulerBusy as exc:
            if lost:
                print(f"easgd service: not scheduling any more: {exc}", file=sys.stderr, flush=True)
            self._renewed = time.monotonic()  # try again later, not on every tick
            return False
        return True

    def check_soon(self) -> None:
        """The store refused a claim under this lease: check it on the next pass."""
        self._renewed = float("-inf")

    def release(self) -> None:
        if self.token:
            try:
                self.store.release_lease(self.token)
            except Exception as exc:  # noqa: BLE001 - it expires on its own
                print(f"easgd service: lease not released: {exc}", file=sys.stderr)
            self.token = None
