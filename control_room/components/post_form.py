"""A form the browser submits itself (a real POST and navigation): Reflex's own forms always prevent
that and send the fields over the websocket instead. Used where the server must answer with a cookie."""

from __future__ import annotations

from typing import ClassVar

import reflex as rx


class PostForm(rx.Component):
    """``<form method="post" action=...>`` with no submit handler of Reflex's."""

    tag = "form"
    _is_tag_in_global_scope: ClassVar[bool] = True  # a plain HTML element, as Reflex's own rx.el ones

    # Where the form posts (a path of this site) and how.
    action: rx.Var[str]
    method: rx.Var[str]


def post_form(*children: rx.Component, action: str, **props: object) -> rx.Component:
    """A native POST form to ``action``."""
    form: rx.Component = PostForm.create(*children, action=action, method="post", **props)
    return form
