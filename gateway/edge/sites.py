"""A configured site compiled once at start into what the hot path needs."""

from __future__ import annotations

import hashlib
import html
import ipaddress
import json
import re
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from yarl import URL

from gateway.config import SiteConfig
from gateway.edge.inject import HeadDecisions

_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def compile_path_patterns(patterns: list[str]) -> re.Pattern[str] | None:
    """`/admin/*` style patterns: `*` matches any run of characters, `/` included.

    Matched against the normalised path (admission.normalize_path)."""
    if not patterns:
        return None
    parts = ["^" + re.escape(p).replace(r"\*", ".*") + "$" for p in patterns]
    # Case-blind: a case-insensitive origin serves /Admin/ as /admin/.
    # DOTALL: a %0A in the path must not let it slip past `*`.
    return re.compile("|".join(parts), re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True, slots=True)
class Site:
    config: SiteConfig
    key: str
    origin: URL
    # Path prefix of the origin URL (without trailing slash) put before every target.
    origin_path: str
    # scheme://authority + origin_path: the request target is appended as received.
    origin_base: str
    origin_authority: str
    # Absolute URL prefixes by which the origin may name itself in a Location.
    origin_prefixes: tuple[str, ...]
    ssl: ssl.SSLContext | bool
    exclude: re.Pattern[str] | None
    conflicts: tuple[bytes, ...]
    block_networks: tuple[_IPNetwork, ...]
    block_agents: tuple[re.Pattern[str], ...]
    # The reserved path prefix and the marker of our own tag in a page.
    prefix: str
    own_marker: bytes
    tag_head: bytes
    tag_tail: bytes
    # Changes whenever the tag changes; part of injected ETags (no stale 304s).
    snippet_version: str
    # Where the tag went in this site's recent pages: a repeated head is not scanned again.
    head_decisions: HeadDecisions = field(default_factory=HeadDecisions)

    def tag(self, nonce: str | None = None) -> bytes:
        if nonce is None:
            return self.tag_head + self.tag_tail
        return self.tag_head + b' nonce="' + nonce.encode("ascii") + b'"' + self.tag_tail

    def is_excluded(self, path: str) -> bool:
        return self.exclude is not None and self.exclude.match(path) is not None

    def is_blocked(self, peer: str | None, user_agent: str) -> bool:
        if any(pattern.search(user_agent) for pattern in self.block_agents):
            return True
        if self.block_networks and peer:
            try:
                address = ipaddress.ip_address(peer)
            except ValueError:
                return False
            return any(address in network for network in self.block_networks)
        return False


def recorder_settings(config: SiteConfig, prefix: str) -> dict[str, object]:
    """What the in-page loader needs to apply the site's policy."""
    rec = config.recording
    return {
        "endpoint": f"{prefix}v1/batch",
        "maskInputs": rec.mask_inputs,
        "maskNumbers": rec.mask_numbers,
        "maskEmails": rec.mask_emails,
        "recordMobile": rec.record_mobile,
        "consent": rec.consent,
        "consentCookie": {"name": rec.consent_cookie.name, "values": rec.consent_cookie.values}
        if rec.consent_cookie.name
        else None,
        "respectGpc": rec.respect_gpc,
        "sampleRate": rec.sample_rate,
        "exclude": rec.exclude,
    }


def build_site(config: SiteConfig, *, prefix: str, recorder_digest: str) -> Site:
    parts = urlsplit(config.origin)
    origin = URL(config.origin)
    default_port = 443 if parts.scheme == "https" else 80
    port = parts.port or default_port
    authority = parts.netloc.rsplit("@", 1)[-1]
    host_forms = {authority, f"{parts.hostname}:{port}"}
    if port == default_port:
        host_forms.add(parts.hostname or "")
    prefixes = tuple(sorted(f"{parts.scheme}://{h}" for h in host_forms))
    settings = json.dumps(recorder_settings(config, prefix), separators=(",", ":"), sort_keys=True)
    src = f"{prefix}recorder.js?v={recorder_digest}"
    head = f'<script src="{html.escape(src)}" data-rec-site="{html.escape(config.key)}"'
    tail = f' data-rec-settings="{html.escape(settings)}" async=""></script>'
    version = hashlib.sha256((head + tail).encode()).hexdigest()[:10]
    rec = config.recording
    # Built once: loading the CA store per connection would cost every request.
    context: ssl.SSLContext | bool = True
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=config.origin_ca or None)
    return Site(
        config=config,
        key=config.key,
        origin=origin,
        origin_path=parts.path.rstrip("/"),
        origin_base=f"{parts.scheme}://{authority}{parts.path.rstrip('/')}",
        origin_authority=authority,
        origin_prefixes=prefixes,
        ssl=context,
        exclude=compile_path_patterns(rec.exclude),
        conflicts=tuple(p.lower().encode() for p in rec.conflicting_scripts),
        block_networks=tuple(ipaddress.ip_network(c, strict=False) for c in rec.block.ips),
        block_agents=tuple(re.compile(p, re.IGNORECASE) for p in rec.block.user_agents),
        prefix=prefix,
        own_marker=f"{prefix}recorder.js".encode("ascii"),
        tag_head=head.encode("ascii"),
        tag_tail=tail.encode("ascii"),
        snippet_version=version,
    )
