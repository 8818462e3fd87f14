"""Host -> site routing: exact names first, then the longest matching wildcard."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Generic, TypeVar

from gateway.memo import remember

T = TypeVar("T")
# Letters, digits, '-', '.' and '_' (seen in real names): anything else in a Host
# is an attack on whatever later reflects it (Location, CSP, logs).
_REG_NAME = re.compile(r"[a-z0-9._-]+")


@remember()
def normalize_host(value: str) -> str | None:
    """The host part of a Host header or authority, lowercased, without port.

    None when the value is not a plausible authority (so it can never match).
    """
    value = value.strip().lower()
    if not value:
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[: end + 1], value[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        # Only an IPv6 address goes in brackets; compare it in one canonical spelling.
        try:
            return str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            return None
    host, sep, port = value.partition(":")
    if sep and not port.isdigit():
        return None
    host = host.rstrip(".")
    return host if _REG_NAME.fullmatch(host) else None


class HostRouter(Generic[T]):
    def __init__(self, entries: Sequence[tuple[Sequence[str], T]]) -> None:
        self._exact: dict[str, T] = {}
        # (suffix with leading dot, target), longest first so the most specific wins.
        wildcards: list[tuple[str, T]] = []
        for hosts, target in entries:
            for host in hosts:
                name = host_key(host)
                if name.startswith("*."):
                    wildcards.append((name[1:], target))
                else:
                    self._exact[name] = target
        self._wildcards = sorted(wildcards, key=lambda item: len(item[0]), reverse=True)

    def resolve(self, host: str) -> T | None:
        target = self._exact.get(host)
        if target is not None:
            return target
        for suffix, wildcard_target in self._wildcards:
            if host.endswith(suffix) and len(host) > len(suffix):
                return wildcard_target
        return None


def host_key(host: str) -> str:
    """A configured host as normalize_host spells it (IP literals canonical, no brackets)."""
    name = host.lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(name.removeprefix("[").removesuffix("]")))
    except ValueError:
        return name
