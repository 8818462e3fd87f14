"""The server-side recording policy: the authority, whatever the browser says.

The in-page loader applies the same rules to avoid sending what would be
refused, but a batch is judged here again from the request itself. Quota and
"no activity yet" need the quota store and the batch's events, so the caller
decides those two; their reasons live in Refusal all the same.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import unquote

from gateway.config import ConsentCookie, RecordingConfig
from gateway.edge.eligibility import is_bot, is_mobile
from gateway.edge.sites import Site

# CMP cookies list their choices as pairs separated by these.
_ITEM_SEPARATORS = re.compile(r"[,|&]")
# Around an item: Cookiebot wraps its list in braces, some CMPs quote values.
_ITEM_TRIM = " \t{}\"'"


class Refusal(StrEnum):
    """Why a batch is answered `{"record": false, "reason": ...}`."""

    DISABLED = "disabled"
    CONSENT = "consent"
    GPC = "gpc"
    EXCLUDED = "excluded"
    QUOTA = "quota"
    BLOCKED = "blocked"
    MOBILE = "mobile"
    BOT = "bot"
    SAMPLED_OUT = "sampled_out"
    NO_ACTIVITY = "no_activity"


@dataclass(frozen=True, slots=True)
class BatchContext:
    """What the policy needs to know about one batch and its request."""

    site: Site
    # Decoded, normalised path (admission.normalize_path) of the batch's `url`.
    url_path: str
    # The same for the href of every Meta event in the batch (SPA navigations).
    meta_paths: Sequence[str]
    # Client IP, already resolved through trusted proxies.
    peer: str | None
    user_agent: str
    # Sec-CH-UA-Mobile: ?1 -> True, ?0 -> False, absent -> None.
    client_hints_mobile: bool | None
    # Sec-GPC: 1 was sent.
    gpc: bool
    # The batch's "consent" field.
    consent_flag: bool | None
    cookies: Mapping[str, str]
    # The batch's "visitor" field.
    visitor: str | None
    session: str
    # The batch holds a user-activity event (judged by the caller).
    has_activity: bool


def check_static(ctx: BatchContext) -> Refusal | None:
    """The first reason not to record this batch, quota and activity aside.

    Checked in this order: disabled, bot, blocked, mobile, gpc, consent,
    excluded, sampled_out.
    """
    site = ctx.site
    rec = site.config.recording
    if not rec.enabled:
        return Refusal.DISABLED
    if is_bot(ctx.user_agent):
        return Refusal.BOT
    if site.is_blocked(ctx.peer, ctx.user_agent) or (
        ctx.visitor is not None and ctx.visitor in rec.block.visitors
    ):
        return Refusal.BLOCKED
    # Either signal is enough: injection, which sees only the User-Agent, already
    # counts Android and iPad tablets as mobile though their hint says ?0.
    if not rec.record_mobile and (ctx.client_hints_mobile or is_mobile(ctx.user_agent)):
        return Refusal.MOBILE
    if rec.respect_gpc and ctx.gpc:
        return Refusal.GPC
    if not consent_given(rec, ctx.consent_flag, ctx.cookies):
        return Refusal.CONSENT
    if site.is_excluded(ctx.url_path) or any(site.is_excluded(p) for p in ctx.meta_paths):
        return Refusal.EXCLUDED
    if not sampled_in(ctx.session, rec.sample_rate):
        return Refusal.SAMPLED_OUT
    return None


def sampled_in(session: str, rate: float) -> bool:
    """Whether a session falls inside the sample; every batch of it gets the same answer.

    The rule, shared with the browser: take the SHA-256 digest of the session
    id's UTF-8 bytes, read its first 4 bytes as a big-endian unsigned integer
    (the first 8 hex digits), divide by 2**32, and sample the session in when
    that fraction is below `rate`. Rate 1 takes every session, rate 0 none.
    In JavaScript: `new DataView(await crypto.subtle.digest("SHA-256",
    new TextEncoder().encode(session))).getUint32(0) / 2 ** 32 < rate`.
    """
    digest = hashlib.sha256(session.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < rate


def consent_given(
    rec: RecordingConfig, consent_flag: bool | None, cookies: Mapping[str, str]
) -> bool:
    """Whether the visitor's consent allows recording under the site's consent mode.

    - The batch's flag False (`__rec("consent", false)`: a withdrawal) always
      refuses, whatever the mode: a visitor's explicit no is never overridden.
    - "none": otherwise always.
    - A consent cookie present with a value that does not accept refuses
      (see `_cookie_accepts`), whatever else says yes.
    - "opt-in": otherwise only with a yes: the flag True or an accepting cookie.
    - "opt-out": otherwise yes.
    """
    if consent_flag is False:
        return False
    if rec.consent == "none":
        return True
    cookie = _cookie_verdict(rec.consent_cookie, cookies)
    if cookie is False:
        return False
    return rec.consent == "opt-out" or consent_flag is True or cookie is True


def _cookie_verdict(config: ConsentCookie, cookies: Mapping[str, str]) -> bool | None:
    """True: the cookie accepts; False: it is present and does not; None: absent."""
    if not config.name or config.name not in cookies:
        return None
    return _cookie_accepts(cookies[config.name], config.values)


def _cookie_accepts(raw: str, accepted: Sequence[str]) -> bool:
    """Whether a consent cookie's value holds one of the accepted values.

    The value is percent-decoded first. An accepted value V (compared exactly,
    case included) matches when:
    - the whole value is V (`cookie_consent=yes`, Cookiebot's `-1`), or
    - V is one of the items of the value split on `,` `|` `&`, each trimmed of
      spaces, braces and quotes: `analytics:yes` in CookieYes'
      `consent:yes,analytics:yes,...`, `statistics:true` in Cookiebot's
      `{necessary:true,statistics:true,...}`, `analytics=1` in `ads=0|analytics=1`, or
    - an item is `name=V` with V itself a `key:value` pair: OneTrust's first
      group in `...&groups=C0001:1,C0002:1&...`.
    V never matches part of an item: `analytics:yes` does not match `analytics:yesno`.
    """
    value = unquote(raw).strip()
    if value in accepted:
        return True
    items: set[str] = set()
    for part in _ITEM_SEPARATORS.split(value):
        item = part.strip(_ITEM_TRIM)
        if item:
            items.add(item)
            _, equals, rest = item.partition("=")
            if equals and ":" in rest:
                items.add(rest)
    return any(v in items for v in accepted)
