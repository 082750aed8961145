"""Mutation testing: how many deliberately planted bugs do the tests catch?

``make mutation`` (``python deploy/dev/mutation.py [domain] [stages]``) runs
mutmut once per pass, each from scratch, and prints each pass's score
(killed / total), its surviving mutants, and last a JSON line with both.

- ``domain``: ``shared/domain/`` mutated, judged by ``tests/unit`` only (the
  pure logic must be pinned down by fast tests). Its configuration is
  ``[tool.mutmut]`` in pyproject.toml, so a bare ``mutmut run`` does the same.
- ``stages``: the money-moving stages (``MONEY_STAGES`` below, in
  ``shared/services/stages/``) mutated, judged by a quick in-process subset of
  the integration tests: the ledger state machine
  (tests/integration/test_ledger_properties.py, a fresh database per run) with
  ``CLEARHOUSE_PROPERTY_EXAMPLES`` examples. Tests that drive the stages
  through Celery worker processes cannot see mutants (the workers import the
  unmutated code), and the rest of the integration suite per mutant would take
  hours. Needs Postgres (``make services``).

Each pass leaves its working copy in ``mutants-<pass>/`` (git-ignored); to look
at a mutant: ``mv mutants-domain mutants && .venv/bin/mutmut show <name>``.
Hypothesis runs derandomized, without deadlines, example database or
shrinking, so a mutant's verdict depends neither on luck nor on the machine's
load, and a failing example costs no shrinking time.

Environment: ``MUTATION_JOBS`` (parallel mutants, default 2),
``CLEARHOUSE_PROPERTY_EXAMPLES`` (stages pass, default 5).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The stages whose work is moving money; fraud.py and limits.py (510 more
# mutants) are left out: the state machine never blocks on a score (its
# merchant's threshold is above 100) nor reaches a limit, so it cannot judge them.
MONEY_STAGES = ("authorize", "common", "fees", "settlement")
# What moved out of the stages and still moves money: capture, holds, voids and
# releases (outcomes.py), the fee plan a capture is charged by (fee_plans.py).
MONEY_SERVICES = ("outcomes", "fee_plans")

PASSES = {
    # None: pyproject's [tool.mutmut] as it stands.
    "domain": None,
    "stages": {
        "only_mutate": [f"shared/services/stages/{name}.py" for name in MONEY_STAGES]
        + [f"shared/services/{name}.py" for name in MONEY_SERVICES],
        "pytest_add_cli_args_test_selection": ["tests/integration/test_ledger_properties.py"],
        # authorize.py asks the acquirer on a thread pool: a process forked
        # after the stats run would inherit a pool without threads and hang,
        # so each mutant runs in a fork of a server that never ran a test.
        "process_isolation": "forkserver",
    },
}


def _run_mutmut(name: str, args: list[str]) -> None:
    """In a child process: mutmut's CLI with this pass's configuration."""
    # The script's folder must not shadow anything; the project root is
    # removed by mutmut itself so that only the mutated copy is imported.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
    from hypothesis import HealthCheck, Phase, settings

    settings.register_profile(
        "mutation",
        derandomize=True,
        database=None,
        deadline=None,
        # A failure is all a mutant needs: shrinking it could take minutes.
        phases=(Phase.explicit, Phase.reuse, Phase.generate),
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.load_profile("mutation")

    import mutmut.configuration as mc

    overrides = dict(PASSES[name] or {})
    if "process_isolation" in overrides:
        overrides["process_isolation"] = mc.ProcessIsolation(overrides["process_isolation"])
    if overrides:
        mc._config = dataclasses.replace(mc._load_config(), **overrides)
    from mutmut.__main__ import cli

    cli.main(args, prog_name="mutmut", standalone_mode=True)


def _mutmut(name: str, *args: str, capture: bool = False) -> str:
    proc = subprocess.run(
        [sys.executable, __file__, "--mutmut", name, *args],
        cwd=ROOT,
        check=True,
        text=True,
        stdout=subprocess.PIPE if capture else None,
    )
    return proc.stdout or ""


def run_pass(name: str, jobs: int) -> dict:
    for stale in (ROOT / "mutants", ROOT / f"mutants-{name}"):
        shutil.rmtree(stale, ignore_errors=True)
    started = time.monotonic()
    _mutmut(name, "run", "--max-children", str(jobs))
    elapsed = time.monotonic() - started
    _mutmut(name, "export-cicd-stats", capture=True)
    stats = json.loads((ROOT / "mutants" / "mutmut-cicd-stats.json").read_text())
    survivors = [
        line.strip() for line in _mutmut(name, "results", capture=True).splitlines() if ":" in line
    ]
    (ROOT / "mutants").rename(ROOT / f"mutants-{name}")
    total = stats["total"]
    score = stats["killed"] / total if total else 0.0
    print(f"\n{name}: surviving or unchecked mutants ({len(survivors)}):")
    for line in survivors:
        print(f"    {line}")
    print(
        f"{name}: mutation score {stats['killed']}/{total} killed = {score:.1%}"
        f" (survived {stats['survived']}, no tests {stats['no_tests']},"
        f" timeout {stats['timeout']}, suspicious {stats['suspicious']}) in {elapsed:.0f} s"
    )
    return {**stats, "score": round(score, 4), "seconds": round(elapsed)}


def main(argv: list[str]) -> int:
    if argv[:1] == ["--mutmut"]:
        _run_mutmut(argv[1], argv[2:])
        return 0
    names = argv or list(PASSES)
    unknown = set(names) - set(PASSES)
    if unknown:
        print(f"unknown pass(es) {sorted(unknown)}; choose from {list(PASSES)}", file=sys.stderr)
        return 2
    os.environ.setdefault("CLEARHOUSE_PROPERTY_EXAMPLES", "5")
    jobs = int(os.environ.get("MUTATION_JOBS", "2"))
    results = {name: run_pass(name, jobs) for name in names}
    print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
