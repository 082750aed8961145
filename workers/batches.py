"""celery-batches' ``Batches``, made to survive a broker reconnect.

Upstream bug: clokep/celery-batches#107, fixed by pull request #108 (merged
June 2026, not in 0.11, the release PyPI serves). ``Batches`` arms its
repeating flush timer once, on the first buffered request, and keeps the
handle on the long-lived task instance. After a broker reconnect Celery
builds a new consumer with a new event-loop hub and calls ``Strategy()``
again, but the handle still points at the old hub's timer, which never fires
again, so the ``if self._tref is None`` guard never re-arms it. From then on
only the count-based flush (``flush_every``) runs: below ``BATCH_MAX``
buffered messages nothing moves, and the messages sit unacknowledged.

The fix sits where upstream put it: ``Strategy()`` drops the stale handle,
and re-arms on the new consumer's timer if requests are still buffered.
Remove this class once a release with #108 is pinned.
"""

from __future__ import annotations

from celery_batches import Batches


class ReconnectSafeBatches(Batches):
    def Strategy(self, task, app, consumer):  # noqa: N802 (Celery's name)
        if self._tref is not None:
            # Bound to the previous consumer's hub: cancel and forget it.
            self._tref.cancel()
            self._tref = None
        handler = super().Strategy(task, app, consumer)
        if not (self._buffer.empty() and self._pending.empty()):
            self._tref = consumer.timer.call_repeatedly(self.flush_interval, self._do_flush)
        return handler
