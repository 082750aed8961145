"""README.md keeps up with what operators run.

Every alert of deploy/prometheus/rules/ has a runbook entry (what it means, what to look at,
what to do) with the rule's severity, and the runbook names no alert that is gone; every
dashboard file is listed with its title; every port compose publishes or a process serves is
in the ports table; every beat job is in the processes section; every variable shared/config.py
reads from the environment is in the Settings table, with the default it really has.
"""

from __future__ import annotations

import os
import re
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from shared.config import Settings
from tests.support import monitoring as m
from workers.schedule import beat_schedule

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
# Variables whose Settings field is not simply their lower-cased name.
FIELD_OF = {"CLEARHOUSE_KEY_DIR": "key_dir", "CLEARHOUSE_ENV": "environment"}
# How the Settings table writes a default that is nothing (None, "", False).
NOTHING = {"unset", "empty", "off"}
ENTRY = re.compile(r"^#### `(\w+)` \((\w+)\)$", re.M)


def section(heading: str, text: str = README) -> str:
    """The text under ``heading`` (a whole line, e.g. ``### Runbook``) up to the next heading
    of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    assert heading in lines, f"README has no {heading!r} heading"
    start = lines.index(heading) + 1
    # ``#{1,3} `` needs the space right after the hashes: a ``####`` line is not a match.
    heading_at_most = re.compile(rf"^#{{1,{level}}} ")
    end = next((i for i in range(start, len(lines)) if heading_at_most.match(lines[i])), len(lines))
    return "\n".join(lines[start:end])


def table_rows(text: str) -> list[list[str]]:
    """The cells of every markdown table row of ``text`` (header and rule rows left out)."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|") or re.match(r"^\|[-| ]+\|$", line):
            continue
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[1:] if rows else rows


def runbook_entries() -> dict[str, tuple[str, str]]:
    """Alert name -> (severity, entry text) of every ``#### `Alert` (severity)`` entry."""
    runbook = section("### Runbook")
    heads = list(ENTRY.finditer(runbook))
    out = {}
    for head, after in zip(heads, [*heads[1:], None], strict=True):
        body = runbook[head.end() : after.start() if after else len(runbook)]
        assert head.group(1) not in out, f"two runbook entries for {head.group(1)}"
        out[head.group(1)] = (head.group(2), body)
    return out


def alerts() -> dict[str, str]:
    """Alert name -> severity label of every alerting rule."""
    return {
        rule["alert"]: (rule.get("labels") or {}).get("severity", "")
        for _, rule in m.rules()
        if "alert" in rule
    }


def pending_for(alert: str) -> str:
    """How the runbook must write the rule's ``for`` (``2m`` -> ``for 2 min``)."""
    (rule,) = [r for _, r in m.rules() if r.get("alert") == alert]
    if "for" not in rule:
        return "at once (no `for`)"
    n, unit = re.fullmatch(r"(\d+)([smh])", str(rule["for"])).groups()
    return f"for {n} {dict(s='s', m='min', h='h')[unit]}"


def test_the_readme_helpers_read_tables_and_entries():
    text = "## A\n\n| x | y |\n|---|---|\n| `A` | `1` |\n\n#### `Z` (page)\n\n## B\n| n |\n"
    assert table_rows(section("## A", text)) == [["`A`", "`1`"]]
    assert "## B" not in section("## A", text) and "#### `Z`" in section("## A", text)
    assert alerts(), "no alert rules found"
    assert runbook_entries(), "no runbook entries found"


@pytest.mark.parametrize("alert", sorted(alerts()))
def test_every_alert_has_a_runbook_entry_with_its_severity(alert):
    entries = runbook_entries()
    assert alert in entries, f"README's Runbook has no '#### `{alert}` (severity)' entry"
    severity, body = entries[alert]
    assert severity == alerts()[alert], f"{alert} is {alerts()[alert]!r} in the rules"
    fires = body.strip().split("\n\n")[0]
    assert fires.startswith("Fires when"), f"{alert}: say first when it fires"
    assert pending_for(alert) in " ".join(fires.split()), f"{alert} fires {pending_for(alert)}"
    for part in ("- **Means**", "- **Look at**", "- **Do**"):
        assert part in body, f"{alert}'s runbook entry lacks {part}"


def test_the_runbook_names_no_alert_that_is_gone():
    gone = set(runbook_entries()) - set(alerts())
    assert not gone, f"the Runbook has entries for alerts no rule defines: {sorted(gone)}"


def test_every_dashboard_file_is_listed_with_its_title():
    listed = section("### Dashboards")
    dashboards = m.dashboards()
    assert dashboards, "no dashboards found through the providers"
    for path, dashboard in dashboards:
        row = [r for r in table_rows(listed) if r and r[0] == f"`{path.name}`"]
        assert row, f"README's Dashboards table has no row for {path.name}"
        assert row[0][1] == dashboard["title"], f"{path.name} is titled {dashboard['title']!r}"


def test_every_port_compose_publishes_or_a_process_serves_is_in_the_ports_table():
    ports_column = " ".join(r[0] for r in table_rows(section("### Ports")))
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    published = {
        int(re.search(r"(\d+)$", str(p)).group(1))
        for service in services.values()
        for p in service.get("ports") or []
    }
    d = Settings()
    served = {d.metrics_port, d.relay_metrics_port, d.worker_metrics_port, 5555}
    for port in sorted(published | served):
        assert re.search(rf"\b{port}\b", ports_column), f"port {port} is not in README's Ports"


def test_every_beat_job_is_in_the_processes_section_with_its_task():
    rows = {r[0].strip("`"): r[1] for r in table_rows(section("### Processes")) if len(r) == 3}
    # Anchoring on: its job is only scheduled then.
    for job, entry in beat_schedule(Settings(anchor_rpc_url="http://node")).items():
        assert job in rows, f"beat job {job} is not in README's beat jobs table"
        assert f"`{entry['task']}`" in rows[job], f"{job} runs {entry['task']}"


class _Recording(dict):
    """An empty environment that remembers which variables were read."""

    def __init__(self):
        super().__init__()
        self.read: list[str] = []

    def get(self, key, default=None):
        self.read.append(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.append(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.read.append(key)
        return super().__contains__(key)


def variables_read(monkeypatch) -> list[str]:
    env = _Recording()
    monkeypatch.setattr(os, "environ", env)
    Settings.from_env()
    monkeypatch.undo()
    assert env.read, "Settings.from_env read no variable: is the recording broken?"
    return list(dict.fromkeys(env.read))


def settings_table() -> dict[str, str]:
    """Variable -> its default as the README's Settings table writes it."""
    out = {}
    for row in table_rows(section("## Settings")):
        names = re.findall(r"`(\w+)`", row[0])
        defaults = [v.strip() for v in row[1].split(" / ")]
        for i, name in enumerate(names):
            out[name] = defaults[i] if len(defaults) == len(names) else "?"
    return out


def same_default(written: str, default) -> bool:
    written = written.strip("`")
    if default is None or default is False or default == "":
        return written in NOTHING
    if isinstance(default, tuple):
        return written == ",".join(map(str, default))
    if isinstance(default, int | float):
        try:
            return float(written) == float(default)
        except ValueError:
            return False
    return written == default


def test_every_setting_read_from_the_environment_is_in_the_settings_table(monkeypatch):
    table = settings_table()
    missing = [name for name in variables_read(monkeypatch) if name not in table]
    assert not missing, f"README's Settings table lacks {missing}"


def test_the_settings_table_gives_each_settings_real_default(monkeypatch):
    table = settings_table()
    defaults = {f.name: f.default for f in fields(Settings)}
    wrong = []
    for name in variables_read(monkeypatch):
        field = FIELD_OF.get(name, name.lower())
        assert field in defaults, f"{name}: no Settings field {field!r} (add it to FIELD_OF)"
        if not same_default(table.get(name, "?"), defaults[field]):
            wrong.append(
                f"{name}: README says {table.get(name)!r}, the default is {defaults[field]!r}"
            )
    assert not wrong, "\n".join(wrong)


def test_the_default_check_tells_right_from_wrong():
    assert same_default("`5000,2000,10000`", (5000, 2000, 10000))
    assert same_default("`10`", 10.0) and same_default("off", False)
    assert same_default("`0`", 0) and not same_default("unset", 0)
    assert not same_default("`24`", 25) and not same_default("`var/keys`", "var/x")
    assert not same_default("`clearhouse`", None)
