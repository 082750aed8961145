"""Cursor pages (``limit``, ``starting_after``) and an iterator over all of them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# Fetches one page for these query parameters: (items, has_more).
FetchPage = Callable[[dict[str, Any]], tuple[list, bool]]


@dataclass
class ListObject(Generic[T]):
    """One page of a list, as Stripe's: ``data``, ``has_more``; auto_paging_iter() walks on."""

    data: list[T]
    has_more: bool
    _fetch: FetchPage = field(repr=False)
    _params: dict[str, Any] = field(repr=False)

    def __iter__(self) -> Iterator[T]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def next_page(self) -> ListObject[T] | None:
        """The page after this one, or None if this is the last."""
        if not self.has_more or not self.data:
            return None
        params = {**self._params, "starting_after": self.data[-1].id}
        return page(self._fetch, params)

    def auto_paging_iter(self) -> Iterator[T]:
        """Every item from this page on, fetching the next page as this one runs out."""
        current: ListObject[T] | None = self
        while current is not None:
            yield from current.data
            current = current.next_page()


def page(fetch: FetchPage, params: dict[str, Any]) -> ListObject:
    items, has_more = fetch(params)
    return ListObject(items, has_more, fetch, params)
