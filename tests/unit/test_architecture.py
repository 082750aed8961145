"""The layers are enforced: the import contracts, and the rules that imports cannot express.

The contracts live in pyproject.toml (``[tool.importlinter]``) and ``lint-imports`` checks
them; ``make lint`` runs it too. The AST rules below cover what an import graph cannot see:
where Celery messages are sent, where transactions commit, when settings are read and who
reads the environment. Each rule is proven here to fail on a small bad example and to pass
on a clean one, so a green run means the code obeys it, not that the checker is blind.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "intake", "workers", "scheduler", "cli")

# Celery messages leave through one publisher: workers/publish.py sends them, and
# workers/base.py (the task base) defers them until its unit of work has committed, so no
# worker ever sees an uncommitted row.
PUBLISH_ALLOWED = frozenset({"workers/publish.py", "workers/base.py"})
PUBLISH_METHODS = frozenset({"send_task", "apply_async", "delay"})

# One unit of work commits: shared/db/uow.py itself, and workers/base.py, which runs every
# task body inside one. shared/db/migrate.py runs the migrations' DDL on connections of its
# own, outside any unit of work, and so commits them itself.
COMMIT_ALLOWED = frozenset({"shared/db/uow.py", "workers/base.py", "shared/db/migrate.py"})

# The environment is read in one place, Settings.from_env in shared/config.py; every other
# module takes its values from the settings. The exceptions, each with its reason:
ENVIRON_ALLOWED = {
    "shared/config.py": "builds Settings from the environment",
    "shared/observability/metrics.py": (
        "sets and reads PROMETHEUS_MULTIPROC_DIR, which prometheus_client itself reads from"
        " the environment"
    ),
}
ENVIRON_NAMES = frozenset({"environ", "getenv"})

# Settings are read once, at start, by the entry point that needs them: never at import
# (a module that reads them on import freezes whatever environment imported it first).
# No allow-list: this holds everywhere.
SETTINGS_ALLOWED: frozenset[str] = frozenset()

RULES = {
    "publish": "Celery sends (.send_task/.apply_async/.delay) outside "
    + ", ".join(sorted(PUBLISH_ALLOWED)),
    "commit": ".commit() outside " + ", ".join(sorted(COMMIT_ALLOWED)),
    "settings_at_import": "get_settings() / Settings.from_env() run at import time",
    "environ": "os.environ / os.getenv outside " + ", ".join(sorted(ENVIRON_ALLOWED)),
}


@dataclass(frozen=True, order=True)
class Offence:
    path: str
    line: int
    rule: str
    code: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.code}"


def _run_at_import(tree: ast.Module) -> Iterator[ast.AST]:
    """Yield every node evaluated when the module is imported (function bodies are not)."""
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            # Decorators and default values run at import; the body runs when called.
            stack.extend(getattr(node, "decorator_list", []))
            stack.extend(d for d in node.args.defaults + node.args.kw_defaults if d is not None)
        else:
            stack.extend(ast.iter_child_nodes(node))


def _reads_settings(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Name):
        return func.id == "get_settings"
    if not isinstance(func, ast.Attribute):
        return False
    if func.attr == "get_settings":
        return True
    owner = func.value
    owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", None)
    return func.attr == "from_env" and owner_name == "Settings"


def _touches_environ(node: ast.AST, os_names: set[str]) -> bool:
    """``os.environ`` / ``os.getenv`` (under any alias of os), or importing them from os."""
    if isinstance(node, ast.Attribute):
        owner = node.value
        return node.attr in ENVIRON_NAMES and isinstance(owner, ast.Name) and owner.id in os_names
    if isinstance(node, ast.ImportFrom):
        return node.module == "os" and any(a.name in ENVIRON_NAMES for a in node.names)
    return False


def check_file(path: Path, rel: str) -> list[Offence]:
    """Every offence in one source file; ``rel`` is its path from the repository root."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=rel)
    found: list[tuple[str, ast.AST]] = []

    os_names = {"os"} | {
        alias.asname
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name == "os" and alias.asname
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in PUBLISH_METHODS and rel not in PUBLISH_ALLOWED:
                found.append(("publish", node))
            if node.func.attr == "commit" and rel not in COMMIT_ALLOWED:
                found.append(("commit", node))
        if rel not in ENVIRON_ALLOWED and _touches_environ(node, os_names):
            found.append(("environ", node))
    if rel not in SETTINGS_ALLOWED:
        found.extend(("settings_at_import", n) for n in _run_at_import(tree) if _reads_settings(n))

    lines = source.splitlines()
    # A set: two reads on one line are one offence to fix.
    return sorted(
        {Offence(rel, node.lineno, rule, lines[node.lineno - 1].strip()) for rule, node in found}
    )


@functools.cache
def scan() -> tuple[Offence, ...]:
    offences: list[Offence] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            offences.extend(check_file(path, path.relative_to(ROOT).as_posix()))
    return tuple(offences)


def test_the_checks_read_this_checkout():
    # An editable install elsewhere must not stand in for the code under test.
    for package in PACKAGES:
        origin = Path(importlib.util.find_spec(package).origin).resolve()
        assert origin.is_relative_to(ROOT), f"{package} imports from {origin}, not {ROOT}"


def test_the_import_contracts_hold():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    assert lint_imports.exists(), f"{lint_imports} is missing: pip install -e '.[dev]'"
    # From the repository root: lint-imports puts its working directory first on sys.path,
    # so it analyses this checkout. No cache: nothing written into the tree.
    run = subprocess.run(
        [str(lint_imports), "--no-cache", "--no-logo"],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},  # one contract a line, not wrapped at 80
        capture_output=True,
        text=True,
        timeout=300,
    )
    if run.returncode != 0:
        pytest.fail(
            f"lint-imports exited {run.returncode}:\n{run.stdout}{run.stderr}", pytrace=False
        )


def cross_package_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Module cycles that pass through two or more root packages, each as a chain.

    The acyclic_siblings contract looks inside each package; a cycle such as
    intake.x -> workers.y -> intake.x has no common parent there, so it is checked here.
    """
    cycles: dict[frozenset[str], list[str]] = {}
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if importer.split(".")[0] == imported.split(".")[0]:
                continue
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back:
                cycles.setdefault(frozenset(back), [importer, *back])
    return list(cycles.values())


def test_no_import_cycle_crosses_the_root_packages():
    cycles = cross_package_cycles(grimp.build_graph(*PACKAGES, cache_dir=None))
    if cycles:
        chains = "\n".join(" -> ".join(cycle) for cycle in cycles)
        pytest.fail(f"import cycles across packages:\n{chains}", pytrace=False)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_the_code_obeys(rule):
    offences = [o for o in scan() if o.rule == rule]
    if offences:
        pytest.fail(f"{RULES[rule]}:\n" + "\n".join(map(str, offences)), pytrace=False)


# (rule, path it pretends to be, source, lines the rule must report: [] means clean)
CASES = [
    ("publish", "workers/dispatch.py", "def f(app):\n    app.send_task('x', args=[1])\n", [2]),
    ("publish", "scheduler/tasks.py", "def f(task):\n    task.apply_async(kwargs={})\n", [2]),
    ("publish", "intake/app.py", "def f(task):\n    task.delay(1)\n", [2]),
    ("publish", "workers/publish.py", "def f(app):\n    app.send_task('x')\n", []),
    ("publish", "workers/base.py", "def f(sig):\n    sig.apply_async()\n", []),
    ("publish", "workers/dispatch.py", "def f(publish):\n    publish.send('x', [1])\n", []),
    ("commit", "workers/pipeline.py", "def f(uow):\n    with uow:\n        uow.commit()\n", [3]),
    ("commit", "intake/idempotent.py", "def f(nested):\n    nested.commit()\n", [2]),
    ("commit", "shared/db/uow.py", "def commit(self):\n    self._tx.commit()\n", []),
    ("commit", "shared/db/migrate.py", "def f(conn):\n    conn.commit()\n", []),
    ("commit", "workers/pipeline.py", "def f(uow):\n    with uow:\n        uow.add(1)\n", []),
    ("settings_at_import", "workers/base.py", "settings = get_settings()\n", [1]),
    ("settings_at_import", "shared/config.py", "DEFAULT = Settings.from_env()\n", [1]),
    ("settings_at_import", "cli/main.py", "X = config.get_settings().log_level\n", [1]),
    (
        "settings_at_import",
        "workers/pipeline.py",
        "@app.task(rate_limit=get_settings().rate)\ndef f(ids):\n    pass\n",
        [1],
    ),
    ("settings_at_import", "workers/x.py", "def f(s=get_settings()):\n    return s\n", [1]),
    ("settings_at_import", "workers/x.py", "class C:\n    s = get_settings()\n", [2]),
    ("settings_at_import", "workers/x.py", "if True:\n    s = get_settings()\n", [2]),
    ("settings_at_import", "workers/x.py", "def f():\n    return get_settings().x\n", []),
    ("settings_at_import", "intake/app.py", "def get_app():\n    return Settings.from_env()\n", []),
    ("settings_at_import", "workers/x.py", "class C:\n    def m(s):\n        get_settings()\n", []),
    ("settings_at_import", "workers/x.py", "f = lambda: get_settings()\n", []),
    ("environ", "shared/security/vault.py", "import os\nK = os.environ.get('CARD_KEYS')\n", [2]),
    ("environ", "workers/signals.py", "import os\ndef f():\n    return os.getenv('A')\n", [3]),
    ("environ", "workers/x.py", "import os as o\ndef f():\n    o.environ['A'] = '1'\n", [3]),
    ("environ", "workers/x.py", "from os import environ\n", [1]),
    ("environ", "shared/config.py", "import os\ndef f(n):\n    return os.environ.get(n)\n", []),
    ("environ", "shared/observability/metrics.py", "import os\nos.environ['P'] = 'd'\n", []),
    ("environ", "workers/x.py", "import os\nP = os.path.join('a', 'b')\n", []),
]


@pytest.mark.parametrize(
    ("rule", "rel", "source", "lines"),
    CASES,
    ids=[f"{rule}-{rel}-{'bad' if lines else 'clean'}" for rule, rel, _, lines in CASES],
)
def test_each_rule_fails_on_an_offence_and_passes_on_clean_code(rule, rel, source, lines, tmp_path):
    path = tmp_path / "example.py"
    path.write_text(source, encoding="utf-8")
    found = [(o.rule, o.line) for o in check_file(path, rel) if o.rule == rule]
    assert found == [(rule, line) for line in lines], textwrap.indent(source, "    ")


def _package(root: Path, name: str, modules: dict[str, str]) -> None:
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    for module, source in modules.items():
        (root / name / f"{module}.py").write_text(source)


def test_the_cross_package_cycle_check_fails_on_a_cycle_and_passes_without(tmp_path, monkeypatch):
    # The cycle is closed by a function-local import: it counts like any other.
    _package(tmp_path, "archprobe_a", {"x": "import archprobe_b.y\n"})
    _package(tmp_path, "archprobe_b", {"y": "def f():\n    import archprobe_a.x\n"})
    _package(tmp_path, "archprobe_c", {"x": "import archprobe_d.y\n"})
    _package(tmp_path, "archprobe_d", {"y": "import json\n"})
    monkeypatch.syspath_prepend(str(tmp_path))

    cyclic = grimp.build_graph("archprobe_a", "archprobe_b", cache_dir=None)
    assert cross_package_cycles(cyclic) == [["archprobe_a.x", "archprobe_b.y", "archprobe_a.x"]]
    clean = grimp.build_graph("archprobe_c", "archprobe_d", cache_dir=None)
    assert cross_package_cycles(clean) == []
