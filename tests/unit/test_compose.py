"""docker-compose.yml, read as compose reads it: the facts the README and operators rely on.

No Docker engine runs here, so these tests read the YAML (with compose's
``${VAR:-default}`` / ``${VAR:?error}`` interpolation done the same way) and
check what ``docker compose up`` would do: the Procfile's process layout and
commands, pinned images, a healthcheck and restart policy per service, no
default passwords, what is published where, Prometheus's data and rules.
Where the compose CLI is installed, ``docker compose config`` checks the file
against compose's own schema too (it needs no engine).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
# The variables compose requires (``${VAR:?...}``): operators' secrets, no defaults.
SECRETS = {
    "FLOWER_BASIC_AUTH": "ops:s3cret",
    "GRAFANA_ADMIN_PASSWORD": "s3cret",
    "CLEARHOUSE_DB_PASSWORD": "app-s3cret",
}
# Services that are not Procfile processes: the stores, the one-shot migration, monitoring.
INFRASTRUCTURE = {"postgres", "redis", "rabbitmq", "migrate", "prometheus", "grafana"}
ANY_ADDRESS = "0.0.0.0"  # noqa: S104 (what compose publishes on when given no address)
_VAR = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")


class MissingVariable(Exception):
    pass


def interpolate(value, env: dict):
    """Compose's variable interpolation of every string in ``value``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3) or ""
        current = env.get(name)
        unset = current is None or (current == "" and op and op.startswith(":"))
        if op and op.endswith("?") and unset:
            raise MissingVariable(f"{name}: {arg}")
        if op and op.endswith("-") and unset:
            return arg
        return current or ""

    return _VAR.sub(one, value)


def load(env: dict | None = None) -> dict:
    return interpolate(yaml.safe_load(COMPOSE.read_text()), SECRETS if env is None else env)


@pytest.fixture(scope="module")
def services() -> dict:
    return load()["services"]


def argv(command) -> list[str]:
    return list(command) if isinstance(command, list) else shlex.split(command)


def procfile() -> dict[str, list[str]]:
    """Process name -> its command's argv, without the local-only wrapping.

    The Procfile's ``VAR=... exec nice -n 10 .venv/bin/`` prefix is how a
    process starts on a developer machine (its venv, its CPU priority, its
    metrics port); the command itself is what must match.
    """
    out = {}
    for line in (ROOT / "deploy/Procfile").read_text().splitlines():
        m = re.match(r"^([a-z_]+):\s*(.+)$", line)
        if not m:
            continue
        # Leading assignments, `$((...))` arithmetic included (it has spaces).
        command = re.sub(r"^(?:\w+=(?:\$\(\([^)]*\)\)|\S+)\s+)+", "", m.group(2))
        words = shlex.split(command)
        if words[:1] == ["exec"]:
            words.pop(0)
        if words[:2] == ["nice", "-n"]:
            words = words[3:]
        out[m.group(1)] = [w.removeprefix(".venv/bin/") for w in words]
    return out


def niced() -> set[str]:
    text = (ROOT / "deploy/Procfile").read_text()
    return set(re.findall(r"^([a-z_]+):.*\bnice -n \d+", text, re.M))


def test_compose_runs_the_procfile_processes_with_the_same_commands(services):
    processes = procfile()
    assert set(services) - INFRASTRUCTURE == set(processes)
    for name, command in processes.items():
        compose = argv(services[name]["command"])
        if name == "flower":
            # Inside a container Flower listens on every interface; the published port
            # (loopback, below) decides who reaches it. Everything else is the same.
            assert "--address=127.0.0.1" in command and "--address=0.0.0.0" in compose
            command = [a for a in command if not a.startswith("--address=")]
            compose = [a for a in compose if not a.startswith("--address=")]
        assert compose == command, name
        if "worker" in command:
            assert compose[compose.index("--pool") + 1] == "solo", name


def test_what_runs_at_nice_10_locally_runs_at_a_lower_cpu_share(services):
    # Procfile's `nice -n 10` only ranks processes inside one container: compose
    # gives the same processes a lower CPU share than the default 1024.
    assert niced() == {"worker_pipeline", "worker_instant", "worker_background", "relay"}
    for name in procfile():
        share = services[name].get("cpu_shares", 1024)
        assert (share < 1024) == (name in niced()), name


def test_every_image_is_pinned_to_a_full_version(services):
    # major.minor at least (Postgres's full versions have two parts), never major alone.
    full = re.compile(r"^v?\d+\.\d+(\.\d+)?(-[\w.-]+)?$")
    for name, service in services.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag != "latest", (name, image)
        if "build" in service:
            continue  # built from this checkout: the tag names the build, not a release
        assert full.match(tag), (name, image)
    base = re.search(r"^FROM\s+(\S+)", (ROOT / "deploy/Dockerfile").read_text(), re.M)
    assert full.match(base.group(1).rpartition(":")[2]), base.group(1)


def _depends_on(service) -> dict[str, dict]:
    deps = service.get("depends_on") or {}
    # The short syntax (a list) means condition: service_started.
    return {d: {"condition": "service_started"} for d in deps} if isinstance(deps, list) else deps


def _one_shot(services) -> set[str]:
    """Services others wait on to have exited 0 (migrations)."""
    return {
        dep
        for service in services.values()
        for dep, cond in _depends_on(service).items()
        if cond.get("condition") == "service_completed_successfully"
    }


def test_every_service_has_a_restart_policy_and_a_healthcheck(services):
    one_shot = _one_shot(services)
    assert one_shot == {"migrate"}
    for name, service in services.items():
        if name in one_shot:
            # Run once, to completion: restarting it would run it forever, and what is
            # healthy is its exit code, which its dependants wait for.
            assert service["restart"] == "no", name
            continue
        assert service.get("restart") in ("unless-stopped", "always"), name
        check = service.get("healthcheck") or {}
        assert not check.get("disable") and check.get("test"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        for key in ("interval", "timeout", "retries"):
            assert key in check, (name, key)


def _published(service) -> list[tuple[str, str]]:
    """(host address, container port) of every published port, short syntax."""
    out = []
    for spec in service.get("ports", []):
        parts = str(spec).rsplit(":", 2)
        host = parts[0] if len(parts) == 3 else ANY_ADDRESS
        out.append((host, parts[-1]))
    return out


def test_flower_has_basic_auth_from_the_environment_and_listens_on_loopback(services):
    flower = services["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == SECRETS["FLOWER_BASIC_AUTH"]
    assert not any("basic" in a for a in argv(flower["command"]))  # never on the command line
    assert _published(flower) == [("127.0.0.1", "5555")]
    # ... unless asked, and it still gets the app's settings (the merge is shallow).
    asked = load({**SECRETS, "FLOWER_BIND": ANY_ADDRESS})["services"]["flower"]
    assert _published(asked) == [(ANY_ADDRESS, "5555")]
    assert flower["environment"]["REDIS_URL"] == services["api"]["environment"]["REDIS_URL"]
    # The healthcheck and Prometheus use Flower's unauthenticated endpoints.
    assert "/healthcheck" in " ".join(flower["healthcheck"]["test"])


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_to_start_without_an_operator_secret(missing):
    with pytest.raises(MissingVariable, match=missing):
        load({k: v for k, v in SECRETS.items() if k != missing})
    with pytest.raises(MissingVariable, match=missing):
        load({**SECRETS, missing: ""})


def test_grafana_takes_its_admin_password_from_the_environment_and_no_anonymous_users(services):
    env = services["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == SECRETS["GRAFANA_ADMIN_PASSWORD"]
    assert str(env.get("GF_AUTH_ANONYMOUS_ENABLED", "false")).lower() == "false"
    assert str(env.get("GF_USERS_ALLOW_SIGN_UP", "false")).lower() == "false"


def test_nothing_without_authentication_is_published_beyond_loopback(services):
    for name in ("flower", "prometheus"):
        assert all(host == "127.0.0.1" for host, _ in _published(services[name])), name
    for name in ("postgres", "redis"):
        assert not services[name].get("ports"), name


def _mounts(service) -> dict[str, str]:
    """Container path -> host path (or volume name) of every volume of ``service``."""
    out = {}
    for spec in service.get("volumes", []):
        source, target, *_ = spec.split(":")
        out[target] = source
    return out


def test_prometheus_keeps_its_data_in_a_named_volume():
    config = load()
    prometheus = config["services"]["prometheus"]
    flags = dict(a.split("=", 1) for a in prometheus["command"] if "=" in a)
    volume = _mounts(prometheus)[flags["--storage.tsdb.path"]]
    assert volume in config["volumes"]
    config_file = _mounts(prometheus)[flags["--config.file"]]
    assert (ROOT / config_file).resolve() == ROOT / "deploy/prometheus/prometheus.yml"


def test_prometheus_loads_every_rule_file_of_deploy_prometheus_rules(services):
    mounts = _mounts(services["prometheus"])
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    patterns = config.get("rule_files") or []
    # Each pattern, seen from the host: under a mounted folder of this checkout.
    host_patterns = []
    for pattern in patterns:
        inside = [t for t in mounts if pattern.startswith(t.rstrip("/") + "/")]
        assert inside, f"rule_files entry {pattern} is not under a mounted folder"
        target = max(inside, key=len)
        host = (ROOT / mounts[target]).resolve()
        host_patterns.append(str(host) + pattern[len(target.rstrip("/")) :])
    rules_dir = ROOT / "deploy/prometheus/rules"
    rule_files = [
        p
        for p in sorted(rules_dir.rglob("*"))
        if p.suffix in (".yml", ".yaml") and "groups" in (yaml.safe_load(p.read_text()) or {})
    ]
    assert rule_files, "no rule files in deploy/prometheus/rules"
    for path in rule_files:
        # Prometheus globs like filepath.Glob: `*` does not cross a `/`.
        loaded = any(
            fnmatch.fnmatch(str(path), p) and str(path).count("/") == p.count("/")
            for p in host_patterns
        )
        assert loaded, f"{path.relative_to(ROOT)} is not matched by rule_files {patterns}"


def _compose_cli() -> list[str] | None:
    for argv_ in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(argv_[0]) is None:
            continue
        probe = subprocess.run([*argv_, "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return argv_
    return None


def test_docker_compose_itself_accepts_the_file():
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no compose CLI here (the YAML-level tests above check the same facts)")
    base = {k: v for k, v in os.environ.items() if k not in SECRETS}
    run = [*cli, "-f", str(COMPOSE), "config", "-q"]
    ok = subprocess.run(run, env={**base, **SECRETS}, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    refused = subprocess.run(run, env=base, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "FLOWER_BASIC_AUTH" in refused.stderr + refused.stdout


def test_the_services_connect_as_the_app_role_and_only_migrate_knows_the_superuser(services):
    from urllib.parse import urlsplit

    app_services = {n: s for n, s in services.items() if s.get("image") == "clearhouse:dev"}
    assert {"api", "worker_pipeline", "relay", "beat", "migrate"} <= set(app_services)
    for name, service in app_services.items():
        url = urlsplit(service["environment"]["DATABASE_URL"])
        assert (url.username, url.password) == ("clearhouse_app", "app-s3cret"), name
        if name != "migrate":
            assert "MIGRATION_DATABASE_URL" not in service["environment"], name
    assert urlsplit(services["migrate"]["environment"]["MIGRATION_DATABASE_URL"]).username == (
        "postgres"
    )
