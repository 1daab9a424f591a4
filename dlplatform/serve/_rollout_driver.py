"""The rollout driver: one detached, named actor per platform that advances every RUNNING rollout.

It holds no state of its own: each tick reads the RUNNING rollouts from the metadata store and
calls ``rollout.advance_all``. Ray restarts it after a crash (``max_restarts=-1``); ``dlp up``
starts it (``ensure_driver``), and so does every new rollout (``wake_driver``), so a rollout goes
on after a restart of the gateway, of the driver, or of the platform, from where the store says.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import ray

from dlplatform.config import Settings
from dlplatform.context import Backend
from dlplatform.metadata.actor import connect_store, head_actor_options, kill_named_actor
from dlplatform.metadata.artifacts import ArtifactStore
from dlplatform.serve.rollout import advance_all

DRIVER_NAME = "dlp-rollouts"
TICK_S = 0.5
"""How often the driver looks at the RUNNING rollouts (a step's decision waits at most this)."""
IDLE_S = 60.0
"""With no rollout running the driver sleeps until a new rollout wakes it (``wake_driver``),
looking again at least this often (a rollout started while it was restarting)."""

log = logging.getLogger(__name__)


class RolloutDriver:
    """Body of the driver actor (``ray.remote`` below)."""

    def __init__(self, settings: Settings, tick_s: float = TICK_S, idle_s: float = IDLE_S) -> None:
        self._settings = settings
        self._backend: Backend | None = None  # connected by the loop: the store may restart
        self._tick_s = tick_s
        self._idle_s = idle_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.ticks = 0
        threading.Thread(target=self._loop, name="dlp-rollouts", daemon=True).start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            running = 1
            try:
                if self._backend is None:
                    self._backend = _connect(self._settings)
                running = advance_all(self._backend)
            except Exception:  # the store restarting: try again on the next tick
                log.exception("rollout tick failed")
            self.ticks += 1
            # Idle, it costs nothing: no store call until a rollout starts (or ``idle_s``).
            self._wake.wait(self._tick_s if running else self._idle_s)
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


def _connect(settings: Settings) -> Backend:
    return Backend(
        store=connect_store(settings, create=False),  # type: ignore[arg-type]
        artifacts=ArtifactStore.from_settings(settings),
        settings=settings,
    )


DriverActor = ray.remote(num_cpus=0, max_concurrency=4, max_restarts=-1)(RolloutDriver)


def ensure_driver(settings: Settings) -> Any:
    """The handle of the platform's rollout driver, started (detached, on the head) if missing."""
    try:
        return ray.get_actor(DRIVER_NAME, namespace=settings.namespace)
    except ValueError:
        options = head_actor_options(DRIVER_NAME, settings.namespace)
        return DriverActor.options(**options).remote(settings)


def wake_driver(settings: Settings) -> None:
    """Start the driver if needed and have it look at the rollouts now (fire and forget)."""
    ensure_driver(settings).wake.remote()


def stop_driver(settings: Settings) -> bool:
    """Kill the driver (its state is in the store). Returns whether one ran."""
    return kill_named_actor(DRIVER_NAME, settings.namespace)
