"""Conditional and range requests around injected pages.

An injected page is a different representation from the origin's: its ETag is
weak and carries the snippet version, so a client holding a page with an old
snippet never gets a 304 for it (PROXY-CHECKLIST 8, 9). Range requests made by
a navigation are turned into full requests, and injected answers advertise
`Accept-Ranges: none`, so no client splices origin bytes into an injected body.
"""

from __future__ import annotations

import re

from multidict import CIMultiDict

from gateway.edge.headers import has_token

_ENTITY_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*(?:,|$)')
_ONE_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*')
_SUFFIX = re.compile(r"^(.*)-rec([0-9a-f]{10})$")


def injected_etag(origin_etag: str, version: str) -> str | None:
    """The weak ETag of the injected representation of `origin_etag`."""
    match = _ONE_TAG.fullmatch(origin_etag)
    if not match:
        return None
    return f'W/"{match.group(2)}-rec{version}"'


def translate_if_none_match(value: str, version: str) -> tuple[str | None, bool]:
    """Map the client's If-None-Match to what the origin understands.

    Returns (new value or None to drop the header, whether a tag of the current
    injected representation was asked about). Tags of older snippet versions
    are dropped so the origin answers 200 and the page is injected anew.
    """
    if value.strip() == "*":
        return value, False
    kept: list[str] = []
    ours = False
    position = 0
    while position < len(value):
        match = _ENTITY_TAG.match(value, position)
        if not match:
            return value, False  # not a list of entity tags: leave it to the origin
        position = match.end()
        weak, opaque = match.group(1) or "", match.group(2)
        suffix = _SUFFIX.match(opaque)
        if suffix is None:
            kept.append(f'{weak}"{opaque}"')
        elif suffix.group(2) == version:
            kept.append(f'W/"{suffix.group(1)}"')
            ours = True
    return (", ".join(kept) if kept else None), ours


def is_navigation(headers: CIMultiDict[str]) -> bool:
    dest = headers.get("Sec-Fetch-Dest")
    if dest is not None:
        return dest.lower() in ("document", "iframe", "frame")
    return "text/html" in headers.get("Accept", "")


def strip_range_for_navigation(headers: CIMultiDict[str]) -> None:
    if "Range" in headers and is_navigation(headers):
        headers.popall("Range", None)
        headers.popall("If-Range", None)


def mark_injected(headers: CIMultiDict[str], version: str) -> None:
    """Validators and ranges of an injected representation."""
    etag = headers.get("ETag")
    if etag is not None:
        weak = injected_etag(etag, version)
        headers.popall("ETag")
        if weak is not None:
            headers["ETag"] = weak
    # The origin's date says nothing about our snippet: validate by ETag only.
    headers.popall("Last-Modified", None)
    # Digests of the origin's bytes no longer match ours (RFC 3230, RFC 9530).
    for name in ("Content-MD5", "Digest", "Content-Digest", "Repr-Digest"):
        headers.popall(name, None)
    headers["Accept-Ranges"] = "none"


def add_vary(headers: CIMultiDict[str], name: str) -> None:
    values = [v for v in headers.getall("Vary", []) if v.strip()]
    if any(has_token(v, name) or has_token(v, "*") for v in values):
        return
    headers.popall("Vary", None)
    headers["Vary"] = ", ".join([*values, name])
