"""Read a request part through its model.

The model decides what is well formed: a refusal is a 400, worded by the
domain's own check (``check``), which holds the API's messages, codes and
Stripe-style params. What the model accepts goes to ``check`` to become a
domain value; a refusal from it then is a 400 as well, for a rule no schema
states (a Luhn checksum, an expiry in the past, a currency's maximum): the
spec's 400 lists those rules, and the schemathesis run checks that a
schema-valid request is refused only by one of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pydantic

from intake.errors import ApiError
from shared.domain.validation import ValidationError, reject_unknown, require_object
from shared.services.auth import OAuthError
from shared.services.errors import ServiceError

T = TypeVar("T")


# pydantic puts a discriminated union's tag in the error's location, after the field.
UNION_TAGS = frozenset({"card", "wallet"})


def stripe_param(loc: tuple) -> str:
    """``('payment_method', 'card', 'card', 'number')`` as ``payment_method[card][number]``."""
    parts = [str(p) for p in loc]
    if len(parts) > 1 and parts[0] == "payment_method" and parts[1] in UNION_TAGS:
        del parts[1]
    return parts[0] + "".join(f"[{p}]" for p in parts[1:])


def _refusal(exc: pydantic.ValidationError, where: str, root: str, refuse) -> Exception:
    error = exc.errors(include_url=False)[0]
    loc = tuple(error["loc"])
    param = stripe_param(loc) if loc else root
    value = error.get("input")
    if isinstance(value, str) and "\x00" in value:
        detail = f"`{param}` must not contain NUL characters."
    elif not loc:
        detail = f"{where} is invalid: {error['msg']}."
    else:
        detail = f"`{param}` is invalid: {error['msg']}."
    return refuse("parameter_invalid", detail, param)


def bad_request(code: str, detail: str, param: str | None) -> ApiError:
    """The 400 for a request its model refuses."""
    return ApiError(400, code, detail, param=param, title="Invalid request")


def parse(
    model: type[pydantic.BaseModel] | pydantic.TypeAdapter,
    data: object,
    check: Callable[[object], T],
    where: str = "The request body",
    root: str = "body",
    refuse: Callable[[str, str, str | None], Exception] = bad_request,
) -> T:
    """``check(data)`` once ``model`` accepts ``data``; a 400 if it does not."""
    adapter = model if isinstance(model, pydantic.TypeAdapter) else None
    validate = adapter.validate_python if adapter else model.model_validate
    try:
        validate(data)
    except pydantic.ValidationError as exc:
        try:
            check(data)
        except OAuthError:
            raise  # already a 400, with RFC 6749's members
        except (ValidationError, ServiceError) as err:
            raise bad_request(err.code, err.message, err.param) from None
        raise _refusal(exc, where, root, refuse) from None
    return check(data)


def closed(fields: set[str]) -> Callable[[object], dict]:
    """The check of a body that is an object of ``fields`` and nothing else."""

    def check(body: object) -> dict:
        body = require_object(body)
        reject_unknown(body, fields)
        return body

    return check
