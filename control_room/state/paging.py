"""Keyset pages of a list state, as a mixin: the page shown, whether another follows, each page's cursor,
the Previous / Next / first-page events (each reloads the list through the state's ``_reload``), and the
load of one page as the user (``_load_page``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import reflex as rx
from psycopg import AsyncConnection

from control_room.state.events import background, handler, page_url, setter

if TYPE_CHECKING:
    from control_room.state.base import SessionState, SignedIn

R = TypeVar("R")
# Reads one page as the user from a cursor (None: the first page): its rows and the next page's cursor.
PageRead = Callable[[AsyncConnection, "SignedIn", str | None], Awaitable[tuple[list[R], str | None]]]


class KeysetPages(rx.State, mixin=True):
    """Mix into a list state (before SessionState) that defines ``_list``: reading the page at
    ``_page_cursor()``, usually through ``_load_page``. ``load`` shows the current page."""

    page: rx.Field[int] = rx.field(1)
    has_next: rx.Field[bool] = rx.field(False)
    error: rx.Field[str] = rx.field("")
    loaded: rx.Field[bool] = rx.field(False)
    is_loading: rx.Field[bool] = rx.field(False)

    _cursors: list[str | None] = [None]  # the cursor that starts each page seen so far
    _generation: int = 0  # bumped by every load: an older load that ends later does not overwrite a newer one

    def _reload(self) -> Any:
        """The state's own load event."""
        return type(self).load

    def _list(self) -> AsyncIterator[Any]:
        """Read and show the current page: each list state's own, usually through ``_load_page``."""
        raise NotImplementedError

    @background
    async def load(self, _tick: str = "") -> AsyncIterator[Any]:
        """The current page (again): after Previous or Next, a filter change, or a live refresh's tick."""
        async for event in self._list():
            yield event

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

    async def _open_first_page(self, param: str, open_item: Callable[[str], Any]) -> AsyncIterator[Any]:
        """A page load: the first page, then the event ``open_item`` of the item that the address's ``?<param>=``
        names (when it names one)."""
        async with self:
            wanted = page_url(self).query_parameters.get(param, "")
            self._reset_pages()
        async for event in self._list():
            yield event
        if wanted:
            yield open_item(wanted)

    async def _load_page(
        self, read: PageRead[R], show: Callable[[list[R]], None], *, needs_project: bool = True
    ) -> AsyncIterator[Any]:
        """Read the current page as the user (the sign-in page when nobody is), then, with the state locked,
        ``show`` its rows (none when the read failed: ``error`` says why) and record where the next starts."""
        session = cast("SessionState", self)
        async with self:
            self._generation += 1
            generation, cursor = self._generation, self._page_cursor()
            self.is_loading = True
        reading = await session._read_as_user(
            lambda conn, signed: read(conn, signed, cursor), needs_project=needs_project
        )
        if reading.signed is None:
            yield await session._login_redirect()
            return
        async with self:
            if generation != self._generation:
                return
            rows, next_cursor = reading.value if reading.value is not None else ([], None)
            show(rows)
            self._record_next(next_cursor)
            self.error, self.loaded, self.is_loading = reading.error, True, False

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


def filter_setter(var: str, *, longest: int | None = None) -> Any:
    """A regular event handler ``set_<var>`` for a filter of a ``KeysetPages`` list (a search box, a select): it
    stores the value it is given in the state var ``var`` (a text cut to ``longest`` characters), then shows the
    first page again. Assign it to the class attribute of the same name: ``set_text = filter_setter("text")``."""
    return setter(var, longest=longest, then="_first_page")
