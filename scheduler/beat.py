"""RedBeat, made to survive the loss of Redis' contents.

RedBeat keeps the schedule and the one-active-beat lock in Redis. Redis is
only a transport here (DESIGN §1.3), so a restart without persistence must
not stop the scheduler, whose re-drive is what recovers lost messages:

- the lock vanished: take it again (blocking, so if another beat got it
  first, this one becomes the standby instead of a second active beat);
- the schedule vanished: install the static entries again.
"""

from __future__ import annotations

import logging

from redbeat import RedBeatScheduler
from redbeat.schedulers import get_redis

log = logging.getLogger(__name__)


class ResilientRedBeatScheduler(RedBeatScheduler):
    def tick(self, *args, **kwargs):
        if self.lock_key and self.lock is not None and not self.lock.owned():
            log.warning("beat: lost the scheduler lock (Redis flushed or restarted?)")
            self.lock.acquire()
            log.info("beat: Acquired lock")
        if not get_redis(self.app).exists(self.app.redbeat_conf.schedule_key):
            log.warning("beat: schedule missing from Redis; installing it again")
            self.setup_schedule()
        return super().tick(*args, **kwargs)
