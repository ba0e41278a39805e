"""Keyset pages of a list state, as a mixin: the page shown, whether another follows, each page's cursor,
and the Previous / Next / first-page events (each reloads the list through the state's ``_reload``)."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room.state.events import handler


class KeysetPages(rx.State, mixin=True):
    """Mix into a list state whose background ``load`` reads the page at ``_page_cursor()``."""

    page: rx.Field[int] = rx.field(1)
    has_next: rx.Field[bool] = rx.field(False)

    _cursors: list[str | None] = [None]  # the cursor that starts each page seen so far

    def _reload(self) -> Any:
        """The state's own load event (``return MyState.load``)."""
        raise NotImplementedError

    def _page_cursor(self) -> str | None:
        """The cursor of the page to show (None: the first page)."""
        return self._cursors[self.page - 1] if self.page - 1 < len(self._cursors) else None

    def _record_next(self, next_cursor: str | None) -> None:
        """After a page was read: where the next one starts (None on the last page)."""
        self.has_next = next_cursor is not None
        del self._cursors[self.page :]
        self._cursors.append(next_cursor)

    def _reset_pages(self) -> None:
        """Back to the first page, forgetting the cursors seen."""
        self.page, self._cursors = 1, [None]

    def _first_page(self) -> Any:
        """Back to the first page (after a filter change); returns the reload."""
        self._reset_pages()
        return self._reload()

    @handler
    def next_page(self) -> Any:
        """The page after this one."""
        if self.has_next:
            self.page += 1
            return self._reload()
        return None

    @handler
    def previous_page(self) -> Any:
        """The page before this one."""
        if self.page > 1:
            self.page -= 1
            return self._reload()
        return None
