"""Fused stages: consecutive pipeline stages run in one task, without messages between.

A stage costs its own message, batch, claim (SELECT ... FOR UPDATE) and commit.
When one worker pool consumes several consecutive stages anyway (deploy/Procfile's
``worker_pipeline`` takes limits, fraud, fees and authorize), running them one
after the other in one task saves the messages and batches between them, and
limits, fraud and fees share one unit of work (one claim, one commit); the
intent never waits in the queues between them.

Limits commits on its own, all the same, before fraud and fees run in a
second unit of work: its limit counters are the hottest rows there are (every
batch of a merchant takes the merchant's), and a transaction holds its row
locks until it commits. Sharing the unit with fraud and fees held them while
fraud's velocity queries ran, so the instant lane's batches queued behind a
big economy batch's whole scoring (``units`` below; measured in the README).

``FUSED_STAGES`` names the run of stages to fuse (default
``limits,fraud,fees,authorize``; ``none`` gives each stage its own task,
message and transaction again, so that each can have a pool of its own).
Authorize is three units of work around the acquirer's call (holds, the call
outside any transaction, the answers); fused, they run in the same task right
after the run's transaction commits, without a message in between. The holds
stay a transaction of their own: limits locks the limit counters, the holds
lock ledger balances, and a failure elsewhere releases them in the opposite
order (outcomes.fail voids the hold, then releases the limits), so one
transaction taking both would deadlock with it. A task of a fused stage runs
the stages after it in the run too, so an intent the re-drive sends to
``fraud`` still goes through ``fees`` and authorize; the fused stages' own
tasks stay registered for that, and authorize's for its retries.
"""

from __future__ import annotations

from shared.domain.lanes import SUFFIX

# The pipeline's steps in order; authorize is last and hands on by itself.
PIPELINE = ("limits", "fraud", "fees", "authorize")
AUTHORIZE = "authorize"
FUSABLE = PIPELINE
DEFAULT = ",".join(PIPELINE)


def parse(spec: str) -> tuple[str, ...]:
    """``FUSED_STAGES`` -> the fused run, () for none; ValueError if not a consecutive run."""
    names = tuple(s.strip() for s in spec.split(",") if s.strip())
    if names in ((), ("none",)):
        return ()
    unknown = [n for n in names if n not in FUSABLE]
    if unknown:
        raise ValueError(
            f"setting FUSED_STAGES names {', '.join(unknown)}: only {', '.join(FUSABLE)} "
            "can be fused (or none)"
        )
    start = FUSABLE.index(names[0])
    if len(names) < 2 or names != FUSABLE[start : start + len(names)]:
        raise ValueError(
            "setting FUSED_STAGES must be two or more consecutive stages in pipeline order "
            f"({', '.join(FUSABLE)}), got {spec!r}"
        )
    return names


def chain(step: str, fused: tuple[str, ...]) -> tuple[str, ...]:
    """The stages a task of ``step`` (either lane) runs: itself, then the fused ones after it."""
    base = step.removesuffix(SUFFIX)
    if base not in fused:
        return (base,)
    return fused[fused.index(base) :]


def then(step: str, default: str | None, fused: tuple[str, ...]) -> str | None:
    """Where ``step``'s survivors go: ``default``, or the step after its fused run (same lane)."""
    run = chain(step, fused)
    if default is None or len(run) == 1:
        return default
    if run[-1] == AUTHORIZE:
        return None  # authorize hands its intents on itself (settlement, retries)
    return in_lane(step, PIPELINE[PIPELINE.index(run[-1]) + 1])


def units(stages: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """The units of work (transactions) a fused run's stages before authorize take, in order.

    Limits is a unit of its own (it holds the limit counters until commit); the
    stages after it share one.
    """
    stages = tuple(stages)
    if len(stages) > 1 and stages[0] == "limits":
        return (("limits",), stages[1:])
    return (stages,) if stages else ()


def in_lane(step: str, name: str) -> str:
    """Step ``name`` in the lane ``step`` runs in (shared/domain/lanes.py)."""
    return name + SUFFIX if step.endswith(SUFFIX) else name
