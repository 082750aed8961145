"""The TOTP window and replay rules (shared/domain/totp.py), with pyotp's real codes."""

from __future__ import annotations

import pyotp
import pytest

from shared.domain.totp import STEP_S, decide, step_at

SECRET = pyotp.random_base32()
CODE_AT = pyotp.TOTP(SECRET).generate_otp
# The middle of a step, so "now" is unambiguous.
NOW = 1_900_000_000 // STEP_S * STEP_S + 15
STEP = step_at(NOW)


def test_the_step_is_the_30_second_interval():
    assert step_at(NOW) == NOW // 30
    assert step_at(STEP * 30) == STEP and step_at(STEP * 30 - 1) == STEP - 1


def test_pyotp_generates_the_code_of_a_step():
    assert CODE_AT(STEP) == pyotp.TOTP(SECRET).at(NOW)


@pytest.mark.parametrize(
    ("offset", "accepted"), [(-2, False), (-1, True), (0, True), (1, True), (2, False)]
)
def test_a_code_is_good_within_one_step_either_way(offset, accepted):
    verdict = decide(CODE_AT(STEP + offset), CODE_AT, NOW, None)
    assert verdict.accepted is accepted
    assert verdict.step == (STEP + offset if accepted else None)
    assert verdict.reason == (None if accepted else "totp_invalid")


def test_the_window_moves_with_the_clock_at_a_step_boundary():
    code = CODE_AT(STEP - 1)
    assert decide(code, CODE_AT, STEP * 30 + 29.999, None).accepted
    assert not decide(code, CODE_AT, (STEP + 1) * 30, None).accepted


def test_a_code_is_accepted_once():
    code = CODE_AT(STEP)
    first = decide(code, CODE_AT, NOW, None)
    assert first.step == STEP
    again = decide(code, CODE_AT, NOW, first.step)
    assert not again.accepted and again.reason == "totp_replayed"


def test_an_older_step_than_the_last_accepted_is_refused():
    verdict = decide(CODE_AT(STEP - 1), CODE_AT, NOW, STEP)
    assert not verdict.accepted and verdict.reason == "totp_replayed"


def test_a_newer_step_than_the_last_accepted_is_good():
    assert decide(CODE_AT(STEP + 1), CODE_AT, NOW, STEP).step == STEP + 1


def test_a_wrong_code_is_invalid_whatever_its_shape():
    good = CODE_AT(STEP)
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    for code in (wrong, "", "abcdef", good + "0", " " + good):
        assert decide(code, CODE_AT, NOW, None).reason == "totp_invalid", code
