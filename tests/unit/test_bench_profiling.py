"""The bench's per-process profile summary (tests/load/profiling.py)."""

from tests.load import profiling

RAW = """\
<module> (celery:8);main (celery/bin/celery.py:236);execute (sqlalchemy/engine/base.py:1418) 30
<module> (celery:8);main (celery/bin/celery.py:236);dumps (json/__init__.py:231) 10
<module> (celery:8);sign (shared/domain/webhooks.py:40) 60
"""


def test_own_and_inclusive_shares_leave_out_frames_in_every_sample():
    summary = profiling.summarize(profiling.read_raw(RAW))
    assert summary["samples"] == 100
    assert summary["own_pct"] == {
        "sign webhooks.py": 60.0,
        "execute base.py": 30.0,
        "dumps __init__.py": 10.0,
    }
    # "<module> celery" is in every sample: it says nothing, so it is not listed.
    assert "<module> celery" not in summary["inclusive_pct"]
    assert summary["inclusive_pct"]["main celery.py"] == 40.0


def test_lines_that_are_not_stacks_are_ignored():
    assert profiling.read_raw("\nnot a stack\nf (a.py:1) x\n") == {}
