"""Bytes no request part may carry: NUL, lone surrogates, invalid UTF-8.

Checked once, where a request's text is read (the middleware: headers, the
query string, the path, the parsed JSON or form body), so no resource, model
or query ever sees them. Postgres cannot store NUL in text, and a lone
surrogate (``"\\ud800"`` is valid JSON) cannot be encoded to UTF-8 at all:
either would otherwise fail deep inside a use case, as a 500. Every refusal
is a 400 naming the part (``param``) and changes nothing.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from intake.errors import ApiError

_BAD = re.compile("[\x00\ud800-\udfff]")
_WHY = {"\x00": "NUL characters"}
SURROGATES = "lone surrogates (U+D800 to U+DFFF)"
# Environ keys of headers that WSGI does not prefix with HTTP_.
_PLAIN_HEADERS = {"CONTENT_TYPE": "Content-Type", "CONTENT_LENGTH": "Content-Length"}


def refuse(param: str, what: str) -> ApiError:
    """The 400 for ``param`` holding ``what`` (a description of the bad bytes)."""
    return ApiError(
        400,
        "parameter_invalid",
        f"`{param}` must not contain {what}.",
        param=param,
        title="Invalid request",
    )


def flaw(text: str) -> str | None:
    """What is wrong with ``text`` (NUL or a lone surrogate), or None."""
    found = _BAD.search(text)
    if found is None:
        return None
    return _WHY.get(found.group(), SURROGATES)


def check_body(data: object) -> None:
    """Refuse a parsed JSON body with a bad string anywhere, naming its field path.

    Paths are written as the API names params (``metadata[note]``,
    ``items[0]``). A bad key is reported at its parent (its own text is
    the problem, so it is never echoed back). Iterative: nesting is bounded
    by the body size, not by Python's stack.
    """
    stack: list[tuple[str | None, object]] = [(None, data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            why = flaw(value)
            if why:
                raise refuse("body" if path is None else path, why)
        elif isinstance(value, dict):
            for key, item in value.items():
                why = flaw(key)
                if why:
                    raise refuse("body" if path is None else path, f"keys with {why}")
                stack.append((_child(path, key), item))
        elif isinstance(value, list):
            stack.extend((_child(path, i), item) for i, item in enumerate(value))


def _child(path: str | None, key: str | int) -> str:
    return str(key) if path is None else f"{path}[{key}]"


def check_pairs(raw: str, where: str) -> None:
    """Refuse a query string or form body (as WSGI hands it over) with bad bytes.

    Percent-decoded strictly: invalid UTF-8 (``%ff``, an encoded surrogate)
    is refused rather than turned into U+FFFD, as falcon's and urllib's
    parsers would. ``where`` names a pair whose name itself is bad.
    """
    for part in raw.split("&"):
        name, _, value = part.partition("=")
        name_text = _decoded(name)
        if name_text is None:
            raise refuse(where, "names that are not valid UTF-8")
        why = flaw(name_text)
        if why:
            raise refuse(where, f"names with {why}")
        value_text = _decoded(value)
        if value_text is None:
            raise refuse(name_text, "invalid UTF-8")
        why = flaw(value_text)
        if why:
            raise refuse(name_text, why)


def check_headers(env: dict) -> None:
    """Refuse a request whose headers hold NUL or a lone surrogate, naming the header."""
    for key, value in env.items():
        if not (key.startswith("HTTP_") or key in _PLAIN_HEADERS) or not isinstance(value, str):
            continue
        why = flaw(value)
        if why:
            name = _PLAIN_HEADERS.get(key) or "-".join(w.capitalize() for w in key[5:].split("_"))
            raise refuse(name, why)


def check_path(path_info: str) -> None:
    """Refuse a path that is not valid UTF-8 (falcon would make U+FFFD of it)."""
    if _decoded(path_info, percent=False) is None:
        raise refuse("path", "invalid UTF-8")


def _decoded(raw: str, percent: bool = True) -> str | None:
    """A WSGI string (bytes tunnelled as latin-1) as UTF-8 text, or None if it is not."""
    try:
        data = raw.encode("latin-1")
    except UnicodeEncodeError:
        # Only an in-process caller hands over more than latin-1 (never a
        # server): keep its surrogates, for the strict decode to refuse.
        data = raw.encode("utf-8", "surrogatepass")
    if percent:
        data = unquote_to_bytes(data.replace(b"+", b" "))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
