"""The rollout driver: one detached, named actor per platform that advances every RUNNING rollout.

It holds no state of its own: each tick reads the RUNNING rollouts from the metadata store and
calls ``rollout.advance_all``; every ``ACCOUNT_S`` it also records what each deployment holds as
Serve scales it (``service.account_replicas``). Both come from ``rollout.ensure_driver`` as
arguments, so this module imports neither (``rollout`` starts the driver: no import cycle). Ray restarts it after a crash (``max_restarts=-1``); ``dlp up``
starts it (``ensure_driver``), and so does every new rollout (``wake_driver``), so a rollout goes
on after a restart of the gateway, of the driver, or of the platform, from where the store says.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import ray

from dlplatform._actors import get_or_create, kill_named_actor
from dlplatform.config import Settings
from dlplatform.context import Backend

DRIVER_NAME = "dlp-rollouts"
TICK_S = 0.5
"""How often the driver looks at the RUNNING rollouts (a step's decision waits at most this)."""
IDLE_S = 60.0
"""With no rollout running the driver sleeps until a new rollout wakes it (``wake_driver``),
looking again at least this often (a rollout started while it was restarting)."""
ACCOUNT_S = 15.0
"""How often the driver records what each deployment holds as Serve scales it
(``service.account_replicas``): an autoscaled deployment's CPU-seconds follow its replicas."""

log = logging.getLogger(__name__)

Advance = Callable[[Backend], int]
"""``rollout.advance_all``: one move of every RUNNING rollout; returns how many there were."""
Account = Callable[[Backend, dict[str, tuple[float, int]]], int]
"""``service.account_replicas``: record what each deployment holds as Serve scales it."""


class RolloutDriver:
    """Body of the driver actor (``ray.remote`` below)."""

    def __init__(
        self,
        settings: Settings,
        advance: Advance,
        account: Account,
        tick_s: float = TICK_S,
        idle_s: float = IDLE_S,
        account_s: float = ACCOUNT_S,
    ) -> None:
        self._settings = settings
        self._advance, self._account = advance, account  # given: this module imports neither
        self._backend: Backend | None = None  # connected by the loop: the store may restart
        self._tick_s = tick_s
        self._idle_s = idle_s
        self._account_s = account_s
        self._held: dict[str, tuple[float, int]] = {}  # deployment -> CPUs, peak memory
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.ticks = 0
        threading.Thread(target=self._loop, name="dlp-rollouts", daemon=True).start()

    def _loop(self) -> None:
        account_at = 0.0
        while not self._stop.is_set():
            running = 1
            try:
                if self._backend is None:
                    self._backend = Backend.connect(self._settings, create=False)
                running = self._advance(self._backend)
                if time.monotonic() >= account_at:
                    account_at = time.monotonic() + self._account_s
                    self._account(self._backend, self._held)
            except Exception:  # the store restarting: try again on the next tick
                log.exception("rollout tick failed")
            self.ticks += 1
            # Idle, it costs little: a look at the deployments every ``account_s``, no rollout
            # call until a rollout starts (or ``idle_s``).
            idle = min(self._idle_s, max(account_at - time.monotonic(), 0.0))
            self._wake.wait(self._tick_s if running else idle)
            self._wake.clear()

    def ping(self) -> int:
        """The number of ticks so far (the driver is alive and looping when it rises)."""
        return self.ticks

    def wake(self) -> None:
        """Look at the rollouts now instead of at the next tick."""
        self._wake.set()

    def shutdown(self) -> None:
        self._stop.set()
        self._wake.set()


DriverActor = ray.remote(num_cpus=0, max_concurrency=4, max_restarts=-1)(RolloutDriver)


def ensure_driver(settings: Settings, advance: Advance, account: Account) -> Any:
    """The handle of the platform's rollout driver, started (detached, on the head) if missing
    (``rollout.ensure_driver`` gives it what it calls)."""
    return get_or_create(DriverActor, DRIVER_NAME, settings.namespace, (settings, advance, account),
                         what="the rollout driver", wait=False)  # fmt: skip


def stop_driver(settings: Settings) -> bool:
    """Kill the driver (its state is in the store). Returns whether one ran."""
    return kill_named_actor(DRIVER_NAME, settings.namespace)
