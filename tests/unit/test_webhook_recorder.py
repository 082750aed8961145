"""The webhook recorder stores the outcomes that finish together in one transaction."""

import threading
import time
from types import SimpleNamespace

from workers import notifications


def test_outcomes_finishing_within_the_batch_interval_are_stored_together(monkeypatch):
    settings = SimpleNamespace(batch_max=100, batch_interval_ms=300)
    monkeypatch.setattr(notifications, "_settings", lambda: settings)
    stored, done = [], threading.Event()
    recorder = notifications._Recorder()

    def store(items):
        stored.append([send for send, _ in items])
        done.set()

    recorder._store = store
    recorder.ensure_running()
    recorder.put("send-1", None)
    # The recorder has taken the first outcome and is waiting for more.
    deadline = time.monotonic() + 5
    while not recorder._queue.empty():
        assert time.monotonic() < deadline, "the recorder never took the first outcome"
        time.sleep(0.001)  # polling interval
    recorder.put("send-2", None)
    recorder.put("send-3", None)
    assert done.wait(5), "nothing was stored"
    assert stored == [["send-1", "send-2", "send-3"]]
