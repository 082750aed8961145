"""RedBeat, made to survive the loss of Redis' contents.

RedBeat keeps the schedule and the one-active-beat lock in Redis. Redis is
only a transport here (DESIGN §1.3), so a restart without persistence must
not stop the scheduler, whose re-drive is what recovers lost messages:

- the lock vanished: take it again (blocking, so if another beat got it
  first, this one becomes the standby instead of a second active beat);
- the schedule vanished: install the static entries again;
- Redis is away (restarting): log once, try again each second, never exit
  (Celery's beat service exits on any exception out of ``tick``).
"""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

from redbeat import RedBeatScheduler
from redbeat.schedulers import acquire_distributed_beat_lock, get_redis
from redis.exceptions import LockError

from shared.db.faults import Outage, is_transient
from shared.observability import heartbeat

log = logging.getLogger(__name__)
# Seconds between attempts while Redis is away.
RETRY_S = 1.0


class ResilientRedBeatScheduler(RedBeatScheduler):
    _outage = Outage("redis (beat)", log)

    def __init__(self, app, *args, **kwargs):
        # The settings the Celery app was built from (workers/celery_app.py).
        self._heartbeat = heartbeat.Heartbeat.from_settings(app.runtime.settings)
        # RedBeat takes the lock (blocking, as a standby) right after this,
        # before the first tick: stay alive for the healthcheck meanwhile.
        self._waiting = self._heartbeat.keep_alive()
        super().__init__(app, *args, **kwargs)

    def tick(self, *args, **kwargs):
        self._waiting.set()
        self._heartbeat.beat()
        try:
            interval = self._tick(*args, **kwargs)
        except LockError as exc:
            # The lock vanished between our check and RedBeat's extend (a
            # flush): the next tick takes it again.
            log.warning("beat: lock lost mid-tick (%s); retaking it", exc)
            return RETRY_S
        except Exception as exc:
            if not is_transient(exc):
                raise
            self._outage.failed(exc)
            return RETRY_S
        self._outage.recovered()
        return interval

    def setup_schedule(self):
        # Also runs at start, where Celery lets no error pass: a beat started
        # while Redis is away waits for it instead of exiting.
        while True:
            try:
                return super().setup_schedule()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self._outage.failed(exc)
                time.sleep(RETRY_S)

    def _blocking(self, fn, *args):
        # A standby waits here for as long as the active beat lives: healthy.
        waiting = self._heartbeat.keep_alive()
        try:
            fn(*args)
        finally:
            waiting.set()

    def close(self):
        # Shutting down while Redis is away: nothing to release.
        try:
            super().close()
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("beat: could not release the lock (%s)", type(exc).__name__)

    def _tick(self, *args, **kwargs):
        if self.lock_key and self.lock is None:
            # Redis was away when beat started: RedBeat swallowed the error and
            # left no lock. Never schedule without it: take it now (blocking).
            log.warning("beat: no scheduler lock yet; taking it")
            self._blocking(acquire_distributed_beat_lock, SimpleNamespace(scheduler=self))
        elif self.lock_key and not self.lock.owned():
            log.warning("beat: lost the scheduler lock (Redis flushed or restarted?)")
            self._blocking(self.lock.acquire)
            log.info("beat: Acquired lock")
        if not get_redis(self.app).exists(self.app.redbeat_conf.schedule_key):
            log.warning("beat: schedule missing from Redis; installing it again")
            self.setup_schedule()
        return super().tick(*args, **kwargs)
