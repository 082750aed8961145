"""Jinja2 pages of the console: every template autoescaped, shipped inside the package."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import falcon
import jinja2

from shared.money import CURRENCIES

# autoescape=True, not select_autoescape: every template escapes, whatever its name ends with.
_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("intake.console", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def money(amount: int | None, code: str | None) -> str:
    """``1234, "USD"`` as ``12.34 USD`` (integer arithmetic; unknown currencies as given)."""
    if amount is None:
        return "–"
    currency = CURRENCIES.get((code or "").upper())
    if currency is None or currency.exponent == 0:
        return f"{amount} {code or ''}".strip()
    whole, part = divmod(abs(amount), currency.unit)
    sign = "-" if amount < 0 else ""
    return f"{sign}{whole}.{part:0{currency.exponent}d} {currency.code}"


def timestamp(value) -> str:
    """Unix seconds (or a datetime, or an ISO string) as UTC ``YYYY-MM-DD HH:MM:SS``."""
    if value is None or value == "":
        return "–"
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def as_json(value) -> str:
    """A JSON value as text (escaped on output like any other string, unlike ``tojson``)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


_ENV.filters["money"] = money
_ENV.filters["json"] = as_json
_ENV.filters["timestamp"] = timestamp


def environment() -> jinja2.Environment:
    """The console's template environment (tests check its escaping)."""
    return _ENV


def page(req, resp, template: str, *, status: int = 200, **values) -> None:
    """Render ``template`` as the response, with the operator and CSRF token of the request."""
    context = {
        "operator": getattr(req.context, "operator", None),
        "csrf": getattr(req.context, "csrf", ""),
        "request_id": getattr(req.context, "request_id", None),
        "notice": None,
        "error": None,
        **values,
    }
    resp.status = falcon.code_to_http_status(status)
    resp.content_type = falcon.MEDIA_HTML
    resp.text = _ENV.get_template(template).render(context)
