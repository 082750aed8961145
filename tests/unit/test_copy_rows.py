"""hashchain.copy_row_bytes: canonical bytes from a COPY text-format row, as from the fields.

The plain rows (printable ASCII, no quote or backslash) take a fast path; every
other row is decoded first. Both must give exactly ``text_bytes`` of the fields.
"""

import string

from hypothesis import given
from hypothesis import strategies as st

from shared.domain import hashchain as hc

_ESCAPES = {"\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ESCAPES["\v"] = "\\v"


def copy_row(fields) -> bytes:
    """A row as Postgres's COPY TO writes it in text format (CopyAttributeOutText)."""
    out = []
    for f in fields:
        if f is None:
            out.append("\\N")
        else:
            out.append("".join(_ESCAPES.get(ch, ch) for ch in f))
    return "\t".join(out).encode()


FIELD = st.one_of(st.none(), st.text(max_size=12))
PLAIN = st.one_of(
    st.none(),
    st.text(alphabet=string.ascii_letters + string.digits + " :+-._T!#[]~", max_size=12),
)


@given(st.lists(FIELD, min_size=1, max_size=11))
def test_any_row_gives_the_canonical_bytes_of_its_fields(fields):
    assert hc.copy_row_bytes(copy_row(fields)) == hc.text_bytes(fields)


@given(st.lists(PLAIN, min_size=1, max_size=11))
def test_plain_rows_give_the_canonical_bytes_of_their_fields(fields):
    assert hc.copy_row_bytes(copy_row(fields)) == hc.text_bytes(fields)


def test_rows_that_are_not_plain_are_decoded():
    cases = [
        ['say "hi"', None],
        ["back\\slash", "\\N"],  # a field that is the text \N, not a NULL
        ["tab\there", "new\nline"],
        ["café", "\x7f", "\x01"],
        ["", None, ""],
    ]
    for fields in cases:
        assert hc.copy_row_bytes(copy_row(fields)) == hc.text_bytes(fields), fields
    assert hc.copy_fields(copy_row(["\\N", None])) == ["\\N", None]
