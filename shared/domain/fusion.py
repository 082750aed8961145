"""Fused stages: consecutive pipeline stages run in one transaction.

A stage costs its own message, batch, claim (SELECT ... FOR UPDATE) and commit.
When one worker pool consumes several consecutive stages anyway (deploy/Procfile's
``worker_pipeline`` takes limits, fraud, fees and authorize), running them one
after the other in the same unit of work saves all of that but one set, and
the intent never waits in the queues between them.

``FUSED_STAGES`` names the run of stages to fuse (default ``limits,fraud,fees``;
``none`` gives each stage its own transaction and message again, so that each
can have a pool of its own). Authorize is never fused: it opens its own units
of work around the acquirer's call. A task of a fused stage runs the stages
after it in the run too, so an intent the re-drive sends to ``fraud`` still
goes through ``fees`` in the same transaction; the fused stages' own tasks stay
registered for it.
"""

from __future__ import annotations

from shared.domain.lanes import SUFFIX

# The pipeline's steps in order (authorize last: it cannot be fused).
PIPELINE = ("limits", "fraud", "fees", "authorize")
FUSABLE = PIPELINE[:-1]
DEFAULT = "limits,fraud,fees"


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
    after = PIPELINE[PIPELINE.index(run[-1]) + 1]
    return after + SUFFIX if step.endswith(SUFFIX) else after
