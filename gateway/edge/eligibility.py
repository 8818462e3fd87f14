"""Whether a response may carry the recorder tag, judged from headers alone.

The body-dependent checks (insertion point, conflicting recorder, CSP meta)
happen while streaming, in inject.py. Every "no" is an outcome label for
gateway_injections_total.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from multidict import CIMultiDictProxy

from gateway.edge.codecs import SUPPORTED, parse_content_encoding
from gateway.edge.sites import Site
from gateway.memo import remember

# XHTML goes to the browser's XML parser: the tag is written to be well-formed XML too
# (quoted attribute values, `async=""`, an explicit end tag).
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_BOTS = re.compile(
    r"bot\b|bot/|crawl|spider|slurp|facebookexternalhit|mediapartners|embedly|"
    r"lighthouse|pagespeed|ia_archiver|bingpreview",
    re.IGNORECASE,
)
_MOBILE = re.compile(r"Mobi|Android|iPhone|iPad|iPod|Windows Phone", re.IGNORECASE)
# Byte-level scanning is safe only where '<', '>', quotes and '-' are never
# part of a multibyte character.
_UNSAFE_CHARSETS = ("utf-16", "utf-32", "utf-7", "ucs-", "unicode", "iso-2022", "hz-", "csunicode")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A response that passed the header checks: inject while streaming."""

    coding: str  # the origin's content coding ("identity" when none)
    xml: bool = False  # application/xhtml+xml: parsed by the browser as XML


def media_type(content_type: str | None) -> tuple[str, str]:
    """(lowercased media type, lowercased charset or "")."""
    return _media_type(content_type or "")


@remember()
def _media_type(content_type: str) -> tuple[str, str]:
    if not content_type:
        return "", ""
    kind, _, params = content_type.partition(";")
    charset = ""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    return kind.strip().lower(), charset


@remember(longest=512)
def is_bot(user_agent: str) -> bool:
    return bool(_BOTS.search(user_agent))


@remember(longest=512)
def is_mobile(user_agent: str) -> bool:
    return bool(_MOBILE.search(user_agent))


def judge(
    site: Site,
    *,
    method: str,
    path: str,
    status: int,
    request_headers: CIMultiDictProxy[str],
    response_headers: CIMultiDictProxy[str],
    peer: str | None,
) -> Candidate | str:
    """A Candidate, or the outcome that says why this response is left alone."""
    if method not in ("GET", "HEAD"):
        return "not_get"
    if status != 200:
        return "status"
    kind, charset = media_type(response_headers.get("Content-Type"))
    if kind not in HTML_TYPES:
        return "not_html"
    if response_headers.get("Content-Disposition", "").lower().lstrip().startswith("attachment"):
        return "attachment"
    if "no-transform" in response_headers.get("Cache-Control", "").lower():
        return "no_transform"
    if charset.startswith(_UNSAFE_CHARSETS):
        return "utf16" if charset.startswith("utf-16") else "charset"
    codings = parse_content_encoding(",".join(response_headers.getall("Content-Encoding", [])))
    if len(codings) > 1 or (codings and codings[0] not in SUPPORTED):
        return "encoding"
    rec = site.config.recording
    if not rec.enabled:
        return "disabled"
    if site.is_excluded(path):
        return "excluded"
    user_agent = request_headers.get("User-Agent", "")
    if is_bot(user_agent):
        return "bot"
    if not rec.record_mobile and is_mobile(user_agent):
        return "mobile"
    if site.is_blocked(peer, user_agent):
        return "blocked"
    if rec.respect_gpc and request_headers.get("Sec-GPC", "").strip() == "1":
        return "gpc"
    return Candidate(
        coding=codings[0] if codings else "identity", xml=kind == "application/xhtml+xml"
    )
