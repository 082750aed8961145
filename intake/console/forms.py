"""The console's forms and query strings, read through pydantic models like the API's bodies.

A browser sends every field as a string and an empty input as ``""``: blanks are dropped
before validation, so an empty filter means "no filter". A refused form is a 400 page.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Literal, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from intake.schemas.fields import IntentStatus, text
from intake.schemas.parse import bad_request

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,64}$")]
Digits = Annotated[str, Field(pattern=r"^[0-9]{1,12}$")]


class Form(BaseModel):
    model_config = ConfigDict(extra="forbid")
    csrf: text(200) | None = None


class Login(Form):
    email: text(254)
    password: text(1024)
    totp: text(16)


class Password(Form):
    email: text(254)
    current_password: text(1024)
    new_password: text(1024)
    totp: text(16)


class Search(Form):
    merchant: Id | None = None
    status: IntentStatus | None = None
    last4: Annotated[str, Field(pattern=r"^[0-9]{4}$")] | None = None
    created_gte: date | None = None
    created_lte: date | None = None
    starting_after: Id | None = None


class Refund(Form):
    amount: Digits
    reason: Literal["duplicate", "fraudulent", "requested_by_customer"] | None = None
    confirm: Literal["yes"] | None = None


class Redeliver(Form):
    intent: Id
    confirm: Literal["yes"] | None = None


class BlockEntry(Form):
    kind: text(32)
    value: text(256)
    reason: text(500) | None = None


class Suspension(Form):
    reason: text(500) | None = None


class Erasure(Form):
    merchant: Id
    # Any id the merchant may have sent (the API's erase route takes any, too).
    customer: text(500)
    confirm: Literal["yes"] | None = None


class AuditQuery(Form):
    actor: text(300) | None = None
    action: text(100) | None = None
    target: text(300) | None = None
    starting_after: text(100) | None = None


class Page(Form):
    starting_after: text(100) | None = None
    # What the last action did (the redirect after a POST names it), for the notice.
    done: text(20) | None = None


class Done(Form):
    done: text(20) | None = None


M = TypeVar("M", bound=Form)


def read(model: type[M], data: object) -> M:
    """``data`` (a form body or query, blanks dropped) as ``model``; a 400 if refused."""
    fields = {k: v for k, v in (data or {}).items() if v != ""} if isinstance(data, dict) else data
    try:
        return model.model_validate(fields)
    except pydantic.ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        param = ".".join(str(p) for p in error["loc"]) or "form"
        raise bad_request(
            "parameter_invalid", f"`{param}` is invalid: {error['msg']}.", param
        ) from None


def day_start(day: date | None) -> int | None:
    """Unix seconds at 00:00:00 UTC of ``day``."""
    return None if day is None else int(datetime.combine(day, time.min, UTC).timestamp())


def day_end(day: date | None) -> int | None:
    """Unix seconds at 23:59:59 UTC of ``day`` (a range "to" that day includes it)."""
    return None if day is None else int(datetime.combine(day, time.max, UTC).timestamp())
