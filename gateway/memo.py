"""Remembering pure functions of short strings on the hot path.

Hosts, paths, Content-Type and User-Agent values repeat from request to request; a
bounded LRU (in C) answers in a fraction of the parsing time. Inputs longer than
`longest` are computed every time and never kept, so the memory held stays below
`maxsize` x (`longest` + the longest result) characters whatever clients send: about
5 million characters for every cache of the gateway together. Results must be
immutable.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def remember(
    longest: int = 256, maxsize: int = 1024
) -> Callable[[Callable[[str], T]], Callable[[str], T]]:
    def wrap(function: Callable[[str], T]) -> Callable[[str], T]:
        cached = functools.lru_cache(maxsize=maxsize)(function)

        @functools.wraps(function)
        def call(value: str) -> T:
            return cached(value) if len(value) <= longest else function(value)

        call.cache_info = cached.cache_info  # type: ignore[attr-defined]
        return call

    return wrap
