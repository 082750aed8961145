"""The package installs and runs the way the image installs it: without extras.

The image (deploy/Dockerfile) runs ``pip install .``, so a module that imports
something only the ``dev`` extra brings works in every test (they run in the
dev venv) and crash-loops in containers. This test builds a clean venv,
installs the checkout without extras and imports every entry point there, from
outside the checkout (``python -I``: no cwd, no PYTHONPATH), with Postgres and
Redis pointed at closed ports: importing must need neither.

Wheels of the dependencies are cached outside the checkout (per Python version
and dependency list), so only the first run on a machine downloads them; every
run installs into a fresh venv, resolving against that cache alone.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.support.wheels import pip_env, wheel_cache

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# Run in the clean venv. Every entry point a process of the Procfile, compose or
# systemd starts, and the modules the Celery app includes, as a worker loads them.
IMPORT_CHECK = r"""
import importlib, json, sys
from pathlib import Path

import intake.app
import workers.celery_app as celery_app
import workers.schedule, scheduler.beat, workers.relay, cli.main
import flower.command  # `celery flower` (the Procfile's and compose's flower)

for module in celery_app.TASK_MODULES:
    importlib.import_module(module)
celery_app.app.loader.import_default_modules()  # what `celery worker` does at start
from workers.topology import STEPS
missing = sorted({s.task for s in STEPS.values()} - set(celery_app.app.tasks))
app = intake.app.get_app()  # builds the API; connects to nothing until a request
print(json.dumps({
    "files": {m: sys.modules[m].__file__ for m in
              ("intake.app", "workers.celery_app", "scheduler.beat", "cli.main")},
    "missing_tasks": missing,
    "beat_entries": len(celery_app.app.conf.beat_schedule),
    "schedule": callable(workers.schedule.beat_schedule),
    "migrations": (Path(importlib.import_module("shared.db").__file__).parent
                   / "migrations" / "env.py").is_file(),
    "api": type(app).__module__,
    "common_passwords": len(importlib.import_module("shared.domain.passwords").common_passwords()),
    "console_templates": importlib.import_module("intake.console.render").environment()
    .list_templates(),
    "console_css": (importlib.import_module("intake.console.routes").STATIC_DIR
                    / "console.css").is_file(),
}))
"""


def _requirements() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def _wheelhouse(context: Path) -> Path:
    """A folder with wheels of every dependency (not of clearhouse itself), built once."""
    # setuptools and wheel: the build requirements, for pip's isolated build of the checkout.
    specs = [str(context), "setuptools>=68", "wheel"]
    return wheel_cache("wheels", specs, sorted(_requirements()), drop="clearhouse-*.whl")


def _image_context(dest: Path) -> Path:
    """What deploy/Dockerfile copies before its ``pip install .``, laid out in ``dest``.

    Installing from this copy, not the checkout, installs what the image would
    (a file the Dockerfile does not copy is missing here too), and leaves no
    build/ folder in the checkout whose stale files a later build would package.
    """
    dockerfile = (ROOT / "deploy/Dockerfile").read_text().replace("\\\n", " ")
    for line in dockerfile.splitlines():
        instruction, *words = line.split() or [""]
        if instruction == "RUN" and "pip install ." in line:
            return dest
        if instruction != "COPY":
            continue
        *sources, target = (w for w in words if not w.startswith("--"))
        into_dir = target.endswith("/") or len(sources) > 1
        for source in map(ROOT.joinpath, sources):
            if source.is_dir():  # Docker copies a folder's contents
                ignore = shutil.ignore_patterns("__pycache__")
                shutil.copytree(source, dest / target, ignore=ignore, dirs_exist_ok=True)
            else:
                to = dest / target / source.name if into_dir else dest / target
                to.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source, to)
    raise AssertionError("deploy/Dockerfile has no `RUN pip install .`")


@pytest.fixture(scope="module")
def clean_venv(tmp_path_factory):
    context = _image_context(tmp_path_factory.mktemp("image-context"))
    house = _wheelhouse(context)
    venv = tmp_path_factory.mktemp("clean-venv") / "venv"
    # No pip (nor setuptools) inside: this pip installs into it (--python), so the venv
    # holds the package and its dependencies only.
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    # Not editable and without extras, as the Dockerfile does; nothing from an index.
    # --no-compile: byte-compiling every dependency is most of an install's CPU.
    argv = [sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install"]
    argv += ["-q", "--no-compile", "--no-index", "--find-links", str(house), str(context)]
    out = subprocess.run(argv, env=pip_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    # Every installed distribution's own requirements are met too.
    check = [sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "check"]
    out = subprocess.run(check, env=pip_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return venv


def _app_env(venv: Path, tmp: Path) -> dict:
    closed = free_port()  # nothing listens there: a connection at import would fail
    return {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp),
        "LANG": "C.UTF-8",
        "DATABASE_URL": f"postgresql+psycopg2://postgres@127.0.0.1:{closed}/clearhouse",
        "REDIS_URL": f"redis://127.0.0.1:{closed}/0",
        "CLEARHOUSE_KEY_DIR": str(tmp / "keys"),
        "METRICS_DIR": str(tmp / "metrics"),
        "LOG_LEVEL": "WARNING",
    }


def test_every_import_of_the_code_is_a_declared_dependency(clean_venv, tmp_path):
    out = subprocess.run(
        [str(clean_venv / "bin/python"), "-I", "-c", IMPORT_CHECK],
        cwd=tmp_path,
        env=_app_env(clean_venv, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    site = str(clean_venv / "lib")
    assert all(path.startswith(site) for path in found["files"].values()), found["files"]
    assert found["missing_tasks"] == []
    assert found["beat_entries"] > 0 and found["schedule"]
    assert found["migrations"], "alembic's migrations are not in the installed package"
    assert found["api"].startswith("falcon")
    assert found["common_passwords"] > 200, "the common-password list is not in the package"
    assert "login.html" in found["console_templates"], "the console's templates are not in it"
    assert found["console_css"], "the console's stylesheet is not in the package"


def test_every_program_the_procfile_runs_is_installed_and_starts(clean_venv, tmp_path):
    programs = set()
    for line in (ROOT / "deploy/Procfile").read_text().splitlines():
        if line.startswith("#") or ":" not in line:
            continue
        programs |= {Path(a).name for a in shlex.split(line) if a.startswith(".venv/bin/")}
    assert {"gunicorn", "celery", "python"} <= programs
    env = _app_env(clean_venv, tmp_path)
    commands = [[p, "--version"] for p in sorted(programs - {"celery"})]  # python, gunicorn
    commands += [
        ["celery", "-A", "workers.celery_app", "report"],  # finds the app in the package
        ["clearhouse", "--help"],  # the console script
        # make run's dev chain: installed with the package, its eth-tester only with the
        # dev extra, so its help must need neither.
        ["clearhouse-devchain", "--help"],
    ]
    for argv in commands:
        argv[0] = str(clean_venv / "bin" / argv[0])
        out = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert out.returncode == 0, (argv, out.stdout[-2000:], out.stderr[-2000:])
