"""The relay's and beat's liveness file, and the check supervisors run."""

from __future__ import annotations

import os
import time

from shared.observability import heartbeat


def test_check_passes_while_the_file_is_fresh_and_fails_once_stale(tmp_path):
    path = tmp_path / "alive"
    heartbeat.Heartbeat(str(path)).beat()
    assert heartbeat.main(["check", str(path), "30"]) == 0
    old = time.time() - 60
    os.utime(path, (old, old))
    assert heartbeat.main(["check", str(path), "30"]) == 1


def test_check_fails_without_a_file_and_on_bad_usage(tmp_path):
    assert heartbeat.main(["check", str(tmp_path / "never"), "30"]) == 1
    assert heartbeat.main(["check"]) == 2


def test_keep_alive_beats_until_stopped(tmp_path):
    path = tmp_path / "alive"
    beat = heartbeat.Heartbeat(str(path), every_s=0.05)
    stop = beat.keep_alive()
    deadline = time.monotonic() + 5
    while not path.exists():  # polling interval below, not a wait for a result
        assert time.monotonic() < deadline, "keep_alive never touched the file"
        time.sleep(0.01)
    stop.set()


def test_no_file_configured_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    heartbeat.Heartbeat(None).beat()
    heartbeat.Heartbeat(None).keep_alive().set()
    assert list(tmp_path.iterdir()) == []


def test_from_settings_uses_the_settings_file(tmp_path):
    from shared.config import Settings

    path = tmp_path / "alive"
    heartbeat.Heartbeat.from_settings(Settings(heartbeat_file=str(path))).beat()
    assert heartbeat.main(["check", str(path), "30"]) == 0
    assert heartbeat.Heartbeat.from_settings(Settings())._path is None
