"""Fit the recorder's ``<script>`` tag and its collect requests into a page's CSP.

Parsing and source matching follow CSP Level 3, limited to what we need: one
parser-inserted external script, and requests from it to the collect endpoint.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

# ASCII whitespace as CSP defines it; str.split() would also split on e.g. U+00A0.
_WS_CHARS = "\t\n\f\r "
_WS = re.compile(r"[\t\n\f\r ]+")
# base64-value from the nonce-source grammar; anything else could break out of our attribute.
_NONCE = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_SCRIPT_CHAIN = ("script-src-elem", "script-src", "default-src")
_CONNECT_CHAIN = ("connect-src", "default-src")

_Directives = dict[str, list[str]]
# Where a header policy lives: (header index, index among the header's comma-separated policies).
_Loc = tuple[int, int]


@dataclass(frozen=True, slots=True)
class CspPlan:
    allowed: bool  # our tag can load and the recorder can reach the collect endpoint
    nonce: str | None  # put on our <script> tag when set
    headers: tuple[str, ...] | None  # replacement CSP header values, same count and order
    reason: str | None  # "csp_script" or "csp_connect" when not allowed


class _Url(NamedTuple):
    scheme: str
    host: str
    port: int | None  # None when it is the scheme's default, as the URL standard stores it
    path: str


class _Need(NamedTuple):
    """A policy that blocks our script unless we use a nonce or rewrite it."""

    directive: str
    sources: list[str]
    nonces: list[str]
    fix_at: _Loc | None  # None: the policy can't be rewritten (meta or 'strict-dynamic')


_BLOCKED_SCRIPT = CspPlan(allowed=False, nonce=None, headers=None, reason="csp_script")
_BLOCKED_CONNECT = CspPlan(allowed=False, nonce=None, headers=None, reason="csp_connect")


def plan_csp(
    headers: Sequence[str], metas: Sequence[str], *, script_source: str, connect_source: str
) -> CspPlan:
    """Decide whether and how to inject our tag, preferring to leave the policies unchanged."""
    # Our script is served from the page's own origin, so it stands in for the page.
    script_url = _parse_source(script_source)
    connect_url = _parse_source(connect_source)
    policies: list[tuple[_Loc | None, _Directives]] = [
        ((i, j), _parse_policy(text))
        for i, value in enumerate(headers)
        for j, text in enumerate(value.split(","))
    ]
    policies += [(None, _parse_policy(meta)) for meta in metas]

    needs: list[_Need] = []
    for loc, directives in policies:
        # A <meta> policy can't sandbox; a header one without allow-scripts stops every script.
        if loc is not None and _blocks_all_scripts(directives):
            return _BLOCKED_SCRIPT
        found = _effective(directives, _SCRIPT_CHAIN)
        if found is None:
            continue
        name, sources = found
        # With 'strict-dynamic' browsers ignore host sources and 'self' for parser-inserted scripts.
        strict = any(s.lower() == "'strict-dynamic'" for s in sources)
        if not strict and _allows(sources, script_url, script_url):
            continue
        nonces = _nonces(sources)
        fix_at = loc if not strict else None
        if not nonces and fix_at is None:
            return _BLOCKED_SCRIPT
        needs.append(_Need(name, sources, nonces, fix_at))

    # Our tag carries one nonce: every policy we can't rewrite must accept it.
    required = [need.nonces for need in needs if need.fix_at is None]
    if required:
        candidates = [n for n in required[0] if all(n in other for other in required[1:])]
        if not candidates:
            return _BLOCKED_SCRIPT
    else:
        candidates = [n for need in needs for n in need.nonces]
    # The nonce accepted by the most policies leaves the fewest to rewrite.
    nonce = max(candidates, key=lambda n: sum(n in need.nonces for need in needs), default=None)

    edits: dict[_Loc, _Directives] = {}
    for need in needs:
        if nonce not in need.nonces:
            assert need.fix_at is not None  # unfixable needs all hold the chosen nonce
            _add_edit(edits, need.fix_at, need.directive, need.sources, script_source, "script-src")

    for loc, directives in policies:
        found = _effective(directives, _CONNECT_CHAIN)
        if found is None or _allows(found[1], connect_url, script_url):
            continue
        if loc is None:
            return _BLOCKED_CONNECT
        _add_edit(edits, loc, found[0], found[1], connect_source, "connect-src")

    if not edits:
        return CspPlan(allowed=True, nonce=nonce, headers=None, reason=None)
    rewritten = list(headers)
    for (i, j), changes in edits.items():
        texts = rewritten[i].split(",")
        texts[j] = _rewrite_policy(texts[j], changes)
        rewritten[i] = ",".join(texts)
    return CspPlan(allowed=True, nonce=nonce, headers=tuple(rewritten), reason=None)


@lru_cache(maxsize=32)
def _parse_source(source: str) -> _Url:
    # Our sources are a directory prefix: matching the prefix means matching every URL under it.
    parts = urlsplit(source)
    scheme = parts.scheme.lower()
    port = parts.port
    if port == _DEFAULT_PORTS.get(scheme):
        port = None
    return _Url(scheme, parts.hostname or "", port, parts.path or "/")


def _parse_policy(text: str) -> _Directives:
    directives: _Directives = {}
    for token in text.split(";"):
        words = _WS.split(token.strip(_WS_CHARS))
        name = words[0].lower()
        if name and name not in directives:  # the first of duplicate directives wins
            directives[name] = words[1:]
    return directives


def _effective(directives: _Directives, chain: tuple[str, ...]) -> tuple[str, list[str]] | None:
    for name in chain:
        if name in directives:
            return name, directives[name]
    return None


def _blocks_all_scripts(directives: _Directives) -> bool:
    flags = directives.get("sandbox")
    return flags is not None and all(f.lower() != "allow-scripts" for f in flags)


def _nonces(sources: list[str]) -> list[str]:
    found = []
    for source in sources:
        if source[:7].lower() == "'nonce-" and source.endswith("'") and len(source) > 8:
            value = source[7:-1]
            if _NONCE.fullmatch(value):
                found.append(value)
    return found


def _allows(sources: list[str], url: _Url, page: _Url) -> bool:
    # An empty list or a lone 'none' allows nothing; 'none' itself matches no URL.
    return any(_matches(source, url, page) for source in sources)


def _matches(source: str, url: _Url, page: _Url) -> bool:
    lowered = source.lower()
    if lowered == "'self'":
        return (
            url.host == page.host
            and url.port == page.port
            and _scheme_matches(page.scheme, url.scheme)
        )
    if lowered == "*":
        return url.scheme in ("http", "https")
    if source.startswith("'"):
        return False  # other keywords, nonces and hashes never match a URL
    if lowered.endswith(":"):
        return _scheme_matches(lowered[:-1], url.scheme)
    scheme, sep, rest = source.partition("://")
    if not _scheme_matches(scheme.lower() if sep else page.scheme, url.scheme):
        return False
    host_port, slash, path = (rest if sep else source).partition("/")
    host, colon, port = host_port.partition(":")
    return (
        _host_matches(host.lower(), url.host)
        and _port_matches(port if colon else None, url)
        and _path_matches(slash + path, url.path)
    )


def _scheme_matches(expected: str, actual: str) -> bool:
    # CSP lets insecure schemes in a policy match their secure upgrades.
    return expected == actual or (expected, actual) in {
        ("http", "https"),
        ("ws", "wss"),
        ("ws", "http"),
        ("ws", "https"),
        ("wss", "https"),
    }


def _host_matches(pattern: str, host: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])  # "*.example" matches subdomains only
    return pattern == host


def _port_matches(port: str | None, url: _Url) -> bool:
    if port is None:
        return url.port is None  # no port in the source means the scheme's default
    if port == "*":
        return True
    if not (port.isascii() and port.isdigit()):
        return False
    wanted = int(port)
    return wanted == url.port or (url.port is None and wanted == _DEFAULT_PORTS.get(url.scheme))


def _path_matches(pattern: str, path: str) -> bool:
    if not pattern:
        return True
    # A pattern ending in "/" is a prefix; any other pattern must equal the whole path.
    prefix = pattern.endswith("/")
    wanted = pattern.split("/")
    pieces = path.split("/")
    if len(wanted) > len(pieces) or (not prefix and len(wanted) != len(pieces)):
        return False
    if prefix:
        wanted.pop()
    return all(unquote(a) == unquote(b) for a, b in zip(wanted, pieces, strict=False))


def _add_edit(
    edits: dict[_Loc, _Directives],
    loc: _Loc,
    directive: str,
    sources: list[str],
    source: str,
    specific: str,
) -> None:
    # Rather than widen default-src, give the specific directive a copy of it plus our source.
    name = specific if directive == "default-src" else directive
    kept = [s for s in sources if s.lower() != "'none'"]
    edits.setdefault(loc, {})[name] = [*kept, source]


def _rewrite_policy(text: str, changes: _Directives) -> str:
    """Set the listed directives' sources, touching nothing else in the policy text."""
    pending = dict(changes)
    tokens = text.split(";")
    for k, token in enumerate(tokens):
        body = token.lstrip(_WS_CHARS)
        written = _WS.split(body, maxsplit=1)[0]
        sources = pending.pop(written.lower(), None)  # pop: only the first duplicate counts
        if sources is not None:
            tokens[k] = f"{token[: len(token) - len(body)]}{written} {' '.join(sources)}"
    text = ";".join(tokens)
    # New directives go last, before any trailing separators or whitespace.
    base = text.rstrip(_WS_CHARS + ";")
    added = "".join(f"; {name} {' '.join(sources)}" for name, sources in pending.items())
    return base + added + text[len(base) :]
