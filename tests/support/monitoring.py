"""The monitoring config as tests read it: Grafana's provisioning, the dashboards'
PromQL, the alert rules, and an alert's condition taken apart into its series.

- ``dashboards()``: every dashboard JSON the file providers of
  deploy/grafana/provisioning/dashboards/ load, found through the compose file's
  mount of the provisioning folder (the providers name paths in the container).
- ``grafana_expr``: a panel's expression as Grafana sends it, with its built-in
  variables ($__rate_interval...) set to 1m and template variables to ``.*``.
- ``underlying``: the series an alert's condition compares. ``x > 0`` is empty
  while all is well, so it cannot show that ``x`` exists; ``x`` can.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROVISIONING = ROOT / "deploy/grafana/provisioning"
RULES = ROOT / "deploy/prometheus/rules"
COMPOSE = ROOT / "docker-compose.yml"


# --- Grafana ------------------------------------------------------------------


def _yaml_files(folder: Path) -> list[Path]:
    return sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")])


def datasources() -> list[dict]:
    """Every data source the provisioning declares."""
    return [
        ds
        for path in _yaml_files(PROVISIONING / "datasources")
        for ds in (yaml.safe_load(path.read_text()) or {}).get("datasources") or []
    ]


def providers() -> list[tuple[Path, dict]]:
    """(provider file, provider) for every dashboard provider."""
    return [
        (path, provider)
        for path in _yaml_files(PROVISIONING / "dashboards")
        for provider in (yaml.safe_load(path.read_text()) or {}).get("providers") or []
    ]


def grafana_mounts() -> list[tuple[Path, PurePosixPath]]:
    """(folder of the repository, path in the container) of the compose Grafana's bind mounts."""
    service = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            target = rest.split(":")[0]
        else:
            source, target = volume.get("source", ""), volume.get("target", "")
        if source.startswith((".", "/")):  # a bind mount, not a named volume
            mounts.append(((COMPOSE.parent / source).resolve(), PurePosixPath(target)))
    return mounts


def host_folder(container_path: str) -> Path | None:
    """The repository folder that Grafana sees at ``container_path``, if one is mounted."""
    path = PurePosixPath(container_path)
    for source, target in grafana_mounts():
        if path == target or target in path.parents:
            return source / path.relative_to(target)
    return None


def dashboard_files() -> list[Path]:
    """The JSON files the file providers load (Grafana reads their folders recursively)."""
    files = []
    for _, provider in providers():
        if provider.get("type", "file") != "file":
            continue
        folder = host_folder((provider.get("options") or {}).get("path", ""))
        if folder is not None:
            files += sorted(folder.rglob("*.json"))
    return files


def dashboards() -> list[tuple[Path, dict]]:
    return [(path, json.loads(path.read_text())) for path in dashboard_files()]


def panels(container: dict):
    """Every panel of a dashboard, those inside (collapsed) rows too."""
    for panel in container.get("panels") or []:
        yield panel
        yield from panels(panel)


def panel_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(where, expr) of every panel target of ``dashboard``."""
    return [
        (f"{dashboard.get('title')} / {panel.get('title')} [{target.get('refId')}]", target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets") or []
        if target.get("expr")
    ]


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*$", re.S)


def variable_queries(dashboard: dict) -> list[tuple[str, str, str]]:
    """(variable, series selector, label) of every ``label_values(selector, label)`` variable."""
    found = []
    for var in (dashboard.get("templating") or {}).get("list") or []:
        query = var.get("query")
        text = query.get("query", "") if isinstance(query, dict) else query or ""
        m = _LABEL_VALUES.match(text) if var.get("type") == "query" else None
        if m:
            found.append((var["name"], m.group(1), m.group(2)))
    return found


# What Grafana puts for its own variables; every template variable becomes a regex
# matching all its values (so a template variable belongs after =~ or !~).
BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1m",
    "__auto": "1m",
    "__interval_ms": "60000",
    "__range_ms": "60000",
    "__range_s": "60",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")


def grafana_expr(expr: str) -> str:
    """``expr`` with Grafana's variables substituted, as a PromQL query."""

    def value(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        return BUILTINS.get(name, ".*")

    return _VARIABLE.sub(value, expr)


# --- Prometheus rules ----------------------------------------------------------


def rules() -> list[tuple[str, dict]]:
    """(file and group, rule) of every rule in deploy/prometheus/rules/."""
    return [
        (f"{path.name} / {group.get('name')}", rule)
        for path in _yaml_files(RULES)
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups") or []
        for rule in group.get("rules") or []
    ]


# --- an alert's condition, taken apart ------------------------------------------
# Not a PromQL parser: a tokenizer that knows brackets, strings and binary
# operators, which is all it takes to find where a condition compares.

_TOKENS = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=,@])
  | (?P<open>[({\[])
  | (?P<close>[)}\]])
    """,
    re.X,
)
COMPARISONS = {"==", "!=", ">", "<", ">=", "<="}
# Lowest precedence first: `a or b and c` is `a or (b and c)`.
SET_OPERATORS = ({"or"}, {"and", "unless"})
ABSENT = {"absent", "absent_over_time"}
# What may follow a binary operator before its right operand.
MODIFIERS = {"bool", "on", "ignoring", "group_left", "group_right"}
_PAIRS = {"(": ")", "{": "}", "[": "]"}


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    start: int
    end: int
    depth: int  # brackets open around it (its own bracket excluded)


def _tokens(src: str) -> list[_Token]:
    out, depth, pos = [], 0, 0
    while pos < len(src):
        m = _TOKENS.match(src, pos)
        if m is None:
            raise ValueError(f"cannot read PromQL at {src[pos : pos + 20]!r}")
        kind, pos = m.lastgroup, m.end()
        if kind == "space":
            continue
        if kind == "close":
            depth -= 1
        out.append(_Token(kind, m.group(), m.start(), m.end(), depth))
        if kind == "open":
            depth += 1
    return out


def _text(src: str, toks: list[_Token]) -> str:
    return src[toks[0].start : toks[-1].end] if toks else ""


def _closing(toks: list[_Token], i: int) -> int:
    """Index of the bracket closing the one at ``i``."""
    for j in range(i + 1, len(toks)):
        if toks[j].kind == "close" and toks[j].depth == toks[i].depth:
            return j
    raise ValueError("unbalanced brackets")


def _split(toks: list[_Token], is_operator) -> list[list[_Token]] | None:
    """Split at operators outside every bracket; None when there is none."""
    base = toks[0].depth if toks else 0
    cuts = [i for i, t in enumerate(toks) if t.depth == base and is_operator(t)]
    if not cuts:
        return None
    bounds = [-1, *cuts, len(toks)]
    return [toks[a + 1 : b] for a, b in zip(bounds, bounds[1:], strict=False)]


def _drop_modifiers(toks: list[_Token]) -> list[_Token]:
    """An operand without the `bool`, `on(...)`, `group_left(...)` that follow its operator."""
    while toks and toks[0].kind == "name" and toks[0].text.lower() in MODIFIERS:
        toks = toks[1:]
        if toks and toks[0].text == "(":
            toks = toks[_closing(toks, 0) + 1 :]
    return toks


def _scalar(toks: list[_Token]) -> bool:
    """A number literal or arithmetic of numbers (``0.05``, ``-1``, ``3 * 60``)."""
    return all(t.kind in ("number", "op", "open", "close") for t in toks) and any(
        t.kind == "number" for t in toks
    )


def _unwrap(toks: list[_Token]) -> list[_Token]:
    while len(toks) > 2 and toks[0].text == "(" and _closing(toks, 0) == len(toks) - 1:
        toks = toks[1:-1]
    return toks


def _parts(src: str, toks: list[_Token]) -> list[str]:
    toks = _unwrap(toks)
    if not toks:
        return []
    for operators in SET_OPERATORS:
        pieces = _split(toks, lambda t, ops=operators: t.kind == "name" and t.text.lower() in ops)
        if pieces:
            return [p for piece in pieces for p in _parts(src, _drop_modifiers(piece))]
    pieces = _split(toks, lambda t: t.kind == "op" and t.text in COMPARISONS)
    if pieces:
        operands = [p for p in map(_drop_modifiers, pieces) if not _scalar(p)]
        return [p for operand in operands for p in _parts(src, operand)]
    head = toks[0]
    if (
        head.kind == "name"
        and head.text in ABSENT
        and len(toks) > 2
        and toks[1].text == "("
        and _closing(toks, 1) == len(toks) - 1
    ):
        inner = toks[2:-1]
        if head.text == "absent_over_time" and inner and inner[-1].text == "]":
            # The range selector's own bracket: absent_over_time(x[5m]) -> x.
            inner = inner[: max(i for i, t in enumerate(inner) if t.text == "[")]
        return _parts(src, inner)
    return [_nested(src, toks)]


def _nested(src: str, toks: list[_Token]) -> str:
    """``toks``' text, with the comparisons inside its parentheses taken out too.

    ``count(up == 0)`` counts nothing while every target is up; ``count(up)`` does.
    A group that comes apart into several series (``a > 0 or b > 0``) stays as it is.
    """
    out, pos, i = [], toks[0].start, 0
    while i < len(toks):
        if toks[i].text == "(":
            j = _closing(toks, i)
            inner = toks[i + 1 : j]
            if inner:
                args = _split(inner, lambda t: t.text == ",") or [inner]
                rewritten = [_parts(src, arg) for arg in args]
                out.append(src[pos : toks[i].end])
                if all(len(r) == 1 for r in rewritten):
                    out.append(", ".join(r[0] for r in rewritten))
                else:
                    out.append(_text(src, inner))
                pos = toks[j].start
            i = j + 1
            continue
        i += 1
    out.append(src[pos : toks[-1].end])
    return "".join(out)


def underlying(expr: str) -> list[str]:
    """The expressions an alert condition compares, each of which should return series.

    Comparisons with a number are dropped (``x > 0`` -> ``x``; inside
    parentheses too), a comparison of two vectors gives both, ``and``/``or``/
    ``unless`` give each operand, ``absent(x)`` gives ``x``. An expression
    without a condition is returned as it is.
    """
    return _parts(expr, _tokens(expr))
