"""What every console page shares: its unit of work, and a list page's next cursor."""

from __future__ import annotations

from shared.db.uow import UnitOfWork


class Page:
    """A console resource; ``dispatch`` for pages whose use cases publish (refund, redeliver)."""

    def __init__(self, engine, dispatch=None):
        self._engine = engine
        self._dispatch = dispatch

    def _uow(self) -> UnitOfWork:
        return UnitOfWork(self._engine, self._dispatch)


def next_after(rows: list[dict], has_more: bool) -> str | None:
    """The ``starting_after`` of the next page of a newest-first list (None: the last page)."""
    return rows[-1]["id"] if has_more and rows else None


def filters_of(query) -> dict:
    """A search form's filters as given, for the page to show and carry into its next link."""
    return query.model_dump(exclude={"csrf", "starting_after"}, exclude_none=True)
