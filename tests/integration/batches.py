"""rrweb-shaped batches for tests: what the recorder in a page really sends."""

from __future__ import annotations

import json
from typing import Any

EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
PHONE = "+33 6 12 34 56 78"
PASSWORD = "hunter2-Secret!"


def meta(href: str = "http://shop.test/signup", t: float = 1000) -> dict[str, Any]:
    return {"type": 4, "timestamp": t, "data": {"href": href, "width": 1280, "height": 800}}


def element(
    node_id: int,
    tag: str,
    attributes: dict[str, Any] | None = None,
    children: list[Any] | None = None,
) -> dict[str, Any]:
    return {
        "type": 2,
        "id": node_id,
        "tagName": tag,
        "attributes": attributes or {},
        "childNodes": children or [],
    }


def text(node_id: int, content: str) -> dict[str, Any]:
    return {"type": 3, "id": node_id, "textContent": content}


def signup_snapshot(t: float = 1001) -> dict[str, Any]:
    """A sign-up form whose fields already hold values (autofill)."""
    form = element(
        10,
        "form",
        {},
        [
            element(11, "input", {"type": "email", "name": "email", "value": EMAIL}),
            element(12, "input", {"type": "tel", "name": "phone", "value": PHONE}),
            element(13, "input", {"type": "password", "name": "password", "value": PASSWORD}),
            element(14, "input", {"autocomplete": "cc-number", "value": CARD}),
            element(15, "textarea", {}, [text(16, f"Call me on {PHONE} or {EMAIL}")]),
            element(17, "input", {"type": "submit", "value": "Sign up"}),
        ],
    )
    body = element(5, "body", {}, [text(6, "Welcome to the Demo Shop"), form])
    html = element(2, "html", {}, [element(3, "head", {}, []), body])
    document = {"type": 0, "id": 1, "childNodes": [html]}
    return {
        "type": 2,
        "timestamp": t,
        "data": {"node": document, "initialOffset": {"top": 0, "left": 0}},
    }


def mouse_move(t: float = 1002) -> dict[str, Any]:
    positions = [{"x": 10, "y": 20, "id": 5, "timeOffset": 0}]
    return {"type": 3, "timestamp": t, "data": {"source": 1, "positions": positions}}


def click(node_id: int = 11, t: float = 1003) -> dict[str, Any]:
    return {
        "type": 3,
        "timestamp": t,
        "data": {"source": 2, "type": 2, "id": node_id, "x": 5, "y": 5},
    }


def typed(node_id: int, value: str, t: float = 1004) -> dict[str, Any]:
    return {
        "type": 3,
        "timestamp": t,
        "data": {"source": 5, "id": node_id, "text": value, "isChecked": False},
    }


def batch(
    events: list[dict[str, Any]],
    *,
    session: str = "sess-1",
    page: str = "page-1",
    seq: int = 0,
    url: str = "http://shop.test/signup",
    **extra: Any,
) -> dict[str, Any]:
    return {"session": session, "page": page, "seq": seq, "url": url, "events": events, **extra}


def first_batch(**kwargs: Any) -> dict[str, Any]:
    """What the recorder sends at the first activity: meta, snapshot, the activity, typing."""
    events = [
        meta(),
        signup_snapshot(),
        mouse_move(),
        click(),
        typed(11, EMAIL),
        typed(12, PHONE),
        typed(13, PASSWORD),
        typed(14, CARD),
    ]
    return batch(events, **kwargs)


def encoded(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode()
