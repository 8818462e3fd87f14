"""Decide where (and whether) to insert one tag into a streamed HTML page.

The proxy pushes the response body through an HtmlInjector, which holds it
back until it has seen enough of the document head to decide, then releases
it with the tag inserted. Scanning works on raw bytes: the encodings pages
use (UTF-8, ISO-8859-1, Shift_JIS...) never put the ASCII bytes that make
up markup inside a multibyte character, so nothing needs decoding.
"""

from __future__ import annotations

import enum
import html
import re
from collections import deque
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

# Called once, at the decision point, with the content of every enforced
# <meta http-equiv="Content-Security-Policy"> seen so far. Returns the tag
# to insert, or a reason not to inject.
Decide = Callable[[list[str]], bytes | str]

_LT, _GT, _EQ, _SLASH, _BANG = b"<>=/!"
_AFTER_RAW_CLOSE = frozenset(b" \t\n\r\f/>")  # what may follow "</script" to end it
_NOT_WS = re.compile(rb"[^ \t\n\r\f]")
_NOT_WS_OR_SLASH = re.compile(rb"[^ \t\n\r\f/]")
_TAG_NAME_END = re.compile(rb"[ \t\n\r\f/>]")
_ATTR_NAME_END = re.compile(rb"[ \t\n\r\f/>=]")
_UNQUOTED_END = re.compile(rb"[ \t\n\r\f>]")
# A whole start or end tag, read as the byte-class steps in _Lexer._tag read it
# (quotes count only around a value). Atomic and possessive: a tag the buffer
# cuts short fails in linear time and is left to _Lexer._tag.
_WHOLE_TAG_PATTERN = rb"""<(/?)([a-z][^ \t\n\r\f/>]*+)
    (?> [ \t\n\r\f/]*+ [^ \t\n\r\f/>][^ \t\n\r\f/>=]*+ [ \t\n\r\f]*+
        (?: = [ \t\n\r\f]*+ (?: "[^"]*+" | '[^']*+' | [^ \t\n\r\f>"'][^ \t\n\r\f>]*+ | (?=>) )
          | (?!=) )
    )*+
    [ \t\n\r\f/]*+ >"""
_WHOLE_TAG = re.compile(_WHOLE_TAG_PATTERN, re.VERBOSE)
# The common next token: blanks, then a whole tag (one regex call instead of several).
_BLANKS_THEN_TAG = re.compile(rb"[ \t\n\r\f]*+" + _WHOLE_TAG_PATTERN, re.VERBOSE)
# One attribute of a whole tag (or its ">").
_ATTRIBUTE = re.compile(
    rb"""[ \t\n\r\f/]*+
    (?: (>)
      | ([^ \t\n\r\f/>][^ \t\n\r\f/>=]*+) [ \t\n\r\f]*+
        (?: = [ \t\n\r\f]*+ (?: "([^"]*+)" | '([^']*+)' | ([^ \t\n\r\f>"'][^ \t\n\r\f>]*+)? ) )?
    )""",
    re.VERBOSE,
)
# The only elements whose attributes the injector judges.
_JUDGED_ATTRS = frozenset({b"html", b"meta"})
# Bytes lowercased (made visible to the lexer) at least at a time; most heads fit.
_WINDOW = 4096

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_UTF8_BOM = b"\xef\xbb\xbf"
# Elements whose content is text up to their end tag, not markup.
_RAW_TEXT = frozenset({b"script", b"style", b"textarea", b"title", b"noscript"})
_HEAD_CONTENT = frozenset(
    {b"meta", b"title", b"link", b"style", b"script", b"base", b"noscript", b"template"}
)
_HEAD_CLOSERS = frozenset({b"head", b"body", b"html"})
_AMP_ATTRS = frozenset({b"amp", "⚡".encode()})
# http-equiv values that, like charset, belong before anything we insert.
_EARLY_EQUIVS = frozenset({b"content-type", b"x-ua-compatible"})
# Browsers look for the charset in the first 1024 bytes only (the prescan):
# a charset meta that ends there must not be pushed past it by our tag.
_PRESCAN = 1024


class _Kind(enum.Enum):
    UTF16 = enum.auto()  # the document starts with a UTF-16 byte order mark
    TEXT = enum.auto()  # a non-whitespace byte of text
    START = enum.auto()
    END = enum.auto()
    RAW = enum.auto()  # content of a raw-text element, e.g. a script body


_NO_ATTRS: Mapping[bytes, bytes] = MappingProxyType({})


class _Token(NamedTuple):
    kind: _Kind
    start: int
    end: int
    name: bytes = b""  # lowercase; for RAW, the enclosing element
    attrs: Mapping[bytes, bytes] = _NO_ATTRS  # lowercase name -> raw value


class _Lexer:
    """Incremental HTML tokenizer over a growing buffer.

    `tokens` yields complete tokens, or None when it needs bytes beyond
    `end`. Being a generator, it resumes exactly where it stopped, so each
    byte is examined a bounded number of times however the input is chunked.
    Whitespace, comments, doctypes and processing instructions yield nothing.
    """

    def __init__(self) -> None:
        self.buf = bytearray()
        self.low = bytearray()  # ASCII-lowercased copy for case-insensitive matching
        self.end = 0
        self.tokens = self._tokens()

    def append(self, data: bytes) -> None:
        self.buf += data

    def reveal(self, limit: int) -> bool:
        """Lowercase the next window of `buf` (never past `limit`) for the lexer.

        Windows double, so the work stays linear, and a page decided in its
        first kilobyte never has the rest of its bytes copied. False when
        there is nothing more to reveal.
        """
        seen = len(self.low)
        upto = min(len(self.buf), limit, seen + max(seen, _WINDOW))
        if upto <= seen:
            return False
        self.low += self.buf[seen:upto].lower()
        self.end = upto
        return True

    def _tokens(self) -> Generator[_Token | None, None, None]:
        low = self.low
        yield from self._need(1)
        if low[0] in b"\xef\xfe\xff":  # maybe a byte order mark
            yield from self._need(3 if low[0] == 0xEF else 2)
        if low[:2] in _UTF16_BOMS:
            yield _Token(_Kind.UTF16, 0, 2)
            return
        pos = len(_UTF8_BOM) if low.startswith(_UTF8_BOM) else 0
        while True:
            whole = _BLANKS_THEN_TAG.match(low, pos, self.end)
            tag = None if whole is None else self._tag_of(whole, whole.start(1) - 1)
            if tag is None:
                found = _NOT_WS.search(low, pos, self.end)  # inline: most bytes are here already
                start = found.start() if found else (yield from self._seek(_NOT_WS, pos))
                if low[start] != _LT:
                    yield _Token(_Kind.TEXT, start, start + 1)
                    pos = yield from self._find(b"<", start)
                    continue
                yield from self._need(start + 2)
                second = low[start + 1]
                if second == _SLASH:
                    yield from self._need(start + 3)
                elif second == _BANG:
                    yield from self._need(start + 4)
                if low.startswith(b"<!--", start):
                    pos = (yield from self._find(b"-->", start + 2)) + 3
                    continue
                if not (
                    _is_letter(low, start + 1) or (second == _SLASH and _is_letter(low, start + 2))
                ):
                    if second in b"!?/":  # doctype, <?...>, </>...: up to the next ">"
                        pos = (yield from self._find(b">", start + 2)) + 1
                    else:  # a "<" that opens nothing is text
                        yield _Token(_Kind.TEXT, start, start + 1)
                        pos = start + 1
                    continue
                tag = self._complete_tag(start) or (yield from self._tag(start))
            yield tag
            pos = tag.end
            if tag.kind is _Kind.START and tag.name in _RAW_TEXT:
                closed = self._raw_text_end_seen(tag.name, pos)
                pos = closed if closed >= 0 else (yield from self._raw_text_end(tag.name, pos))
                yield _Token(_Kind.RAW, tag.end, pos, tag.name)

    def _complete_tag(self, start: int) -> _Token | None:
        """The tag at `start` if it is whole in the buffer; else None (see `_tag`).

        The fast path of `_tag`, with the same result, except that attributes
        are read only for the elements the injector judges.
        """
        whole = _WHOLE_TAG.match(self.low, start, self.end)
        return None if whole is None else self._tag_of(whole, start)

    def _tag_of(self, whole: re.Match[bytes], start: int) -> _Token | None:
        """The token for a `_WHOLE_TAG` match of the tag at `start` (None: see `_tag`)."""
        low = self.low
        kind = _Kind.END if whole.end(1) > whole.start(1) else _Kind.START
        name = whole.group(2)
        if name not in _JUDGED_ATTRS:
            return _Token(kind, start, whole.end(), name)
        attrs: dict[bytes, bytes] = {}
        pos = whole.end(2)
        while (match := _ATTRIBUTE.match(low, pos, whole.end())) is not None:
            pos = match.end()
            if match.start(1) >= 0:
                return _Token(kind, start, pos, name, attrs)
            if low[pos] in b"\"'":
                return None  # a name starting with a quote: rare, left to `_tag`
            for group in (3, 4, 5):
                if match.start(group) >= 0:
                    value = bytes(self.buf[match.start(group) : match.end(group)])
                    break
            else:
                value = b""
            attrs.setdefault(match.group(2), value)
        return None

    def _tag(self, start: int) -> Generator[None, None, _Token]:
        """Parse the start or end tag at `start`, as an HTML tokenizer would."""
        low = self.low
        kind = _Kind.END if low[start + 1] == _SLASH else _Kind.START
        name_start = start + (2 if kind is _Kind.END else 1)
        pos = yield from self._seek(_TAG_NAME_END, name_start)
        name = bytes(low[name_start:pos])
        attrs: dict[bytes, bytes] = {}
        while True:
            pos = yield from self._seek(_NOT_WS_OR_SLASH, pos)
            if low[pos] == _GT:
                return _Token(kind, start, pos + 1, name, attrs)
            # The first byte of a name is taken even if it is "=".
            name_end = yield from self._seek(_ATTR_NAME_END, pos + 1)
            attr = bytes(low[pos:name_end])
            pos = yield from self._seek(_NOT_WS, name_end)
            value = b""
            if low[pos] == _EQ:
                pos = yield from self._seek(_NOT_WS, pos + 1)
                if low[pos] in b"\"'":
                    close = yield from self._find(bytes(low[pos : pos + 1]), pos + 1)
                    value = bytes(self.buf[pos + 1 : close])
                    pos = close + 1
                else:
                    value_end = yield from self._seek(_UNQUOTED_END, pos)
                    value = bytes(self.buf[pos:value_end])
                    pos = value_end
            attrs.setdefault(attr, value)  # the first of duplicate attributes wins

    def _raw_text_end_seen(self, name: bytes, pos: int) -> int:
        """`_raw_text_end` when its first candidate is in the buffer and closes; else -1."""
        close = b"</" + name
        found = self.low.find(close, pos, self.end)
        after = found + len(close)
        if found >= 0 and after < self.end and self.low[after] in _AFTER_RAW_CLOSE:
            return found
        return -1

    def _raw_text_end(self, name: bytes, pos: int) -> Generator[None, None, int]:
        """Where the end tag closing raw-text element `name` starts."""
        close = b"</" + name
        while True:
            pos = yield from self._find(close, pos)
            after = pos + len(close)
            yield from self._need(after + 1)
            if self.low[after] in _AFTER_RAW_CLOSE:
                return pos
            pos += 1

    def _need(self, end: int) -> Generator[None, None, None]:
        while self.end < end:
            yield None

    def _seek(self, byte_class: re.Pattern[bytes], pos: int) -> Generator[None, None, int]:
        """Index of the first byte at or after `pos` in a one-byte class."""
        while (match := byte_class.search(self.low, pos, self.end)) is None:
            pos = self.end
            yield None
        return match.start()

    def _find(self, sub: bytes, pos: int) -> Generator[None, None, int]:
        while (found := self.low.find(sub, pos, self.end)) < 0:
            pos = max(pos, self.end - len(sub) + 1)  # `sub` may straddle the end
            yield None
        return found


def _is_letter(low: bytearray, index: int) -> bool:
    return low[index : index + 1].isalpha()  # ASCII only, unlike str.isalpha


def _ends_head(token: _Token) -> bool:
    if token.kind is _Kind.START:
        return token.name not in _HEAD_CONTENT
    if token.kind is _Kind.END:
        return token.name in _HEAD_CLOSERS
    return token.kind is _Kind.TEXT


def _must_precede_tag(meta: Mapping[bytes, bytes]) -> bool:
    return b"charset" in meta or meta.get(b"http-equiv", b"").lower() in _EARLY_EQUIVS


@dataclass(frozen=True, slots=True)
class _Decision:
    settings: tuple[object, ...]  # the injector settings it was made with
    prefix: bytes  # the page up to the end of the tag it was made at
    point: int | None  # where the tag goes (the Decide callback still has the last word)
    outcome: str | None  # else: the reason found in the markup not to inject
    csp: tuple[str, ...]  # meta policies seen before it


class HeadDecisions:
    """The last few decisions, by the bytes that led to them.

    A decision made at a tag depends on the page's bytes up to that tag's ">"
    and on nothing after it. A page that starts with those same bytes gets
    the same decision without being scanned again: a site serves the same
    head over and over (a head that changes per request, with a nonce say,
    just misses). Bounded per site: `size` entries, `max_bytes` of prefixes.
    """

    __slots__ = ("_bytes", "_max_bytes", "_recent", "hits")

    def __init__(self, size: int = 8, max_bytes: int = 32 * 1024) -> None:
        self._recent: deque[_Decision] = deque(maxlen=size)
        self._max_bytes = max_bytes
        self._bytes = 0
        self.hits = 0

    def find(self, page: bytearray, settings: tuple[object, ...]) -> _Decision | None:
        for decision in self._recent:
            if decision.settings == settings and page.startswith(decision.prefix):
                self.hits += 1
                return decision
        return None

    def keep(self, decision: _Decision) -> None:
        size = len(decision.prefix)
        if size > self._max_bytes:
            return  # a head this long is scanned each time
        recent = self._recent
        if len(recent) == recent.maxlen:
            self._bytes -= len(recent.pop().prefix)
        while recent and self._bytes + size > self._max_bytes:
            self._bytes -= len(recent.pop().prefix)
        recent.appendleft(decision)
        self._bytes += size


class HtmlInjector:
    """Holds back the start of an HTML document until it knows where the tag goes.

    Output concatenated is the input, plus the tag exactly once at the
    insertion point when `outcome == "injected"`.
    """

    def __init__(
        self,
        decide: Decide,
        *,
        own_marker: bytes,
        conflicts: Sequence[bytes],
        limit: int = 65536,
        xml: bool = False,
        decisions: HeadDecisions | None = None,
    ) -> None:
        if not own_marker or not all(conflicts) or limit < 1:
            # An empty pattern would match every page.
            raise ValueError("markers must be non-empty and limit positive")
        self._decide = decide
        self._own_marker = own_marker.lower()
        self._conflicts = [pattern.lower() for pattern in conflicts]
        self._limit = limit
        self._lexer: _Lexer | None = _Lexer()  # None once decided
        self._point: int | None = None  # insertion point, once a head is seen
        # XHTML: only inside <head> or <body>, anywhere else the tag could end up
        # outside the root element and the XML parser would reject the page.
        self._xml = xml
        self._csp: list[str] = []
        self._insert: tuple[int, bytes] | None = None
        self._outcome: str | None = None
        self._concluded: int | None = None  # the point handed to Decide, once decided
        self._decisions = decisions
        self._settings = (self._own_marker, tuple(self._conflicts), limit, xml)

    @property
    def decided(self) -> bool:
        return self._outcome is not None

    @property
    def outcome(self) -> str | None:
        return self._outcome

    def feed(self, data: bytes) -> bytes:
        """Take the next piece of the body; return what may be sent now."""
        lexer = self._lexer
        if lexer is None:
            return data
        lexer.append(data)
        if self._decisions is not None and self._replay(self._decisions, lexer.buf):
            return self._release(lexer.buf)
        # Scanning stops at `limit` so the outcome never depends on chunking.
        while self._outcome is None:
            token = next(lexer.tokens)
            if token is not None:
                self._on_token(token, lexer.low)
                if self._outcome is not None:
                    self._remember(token, lexer.buf)
            elif not lexer.reveal(self._limit):
                break
        if self._outcome is None and len(lexer.buf) >= self._limit:
            self._give_up()
        return self._release(lexer.buf)

    def finish(self) -> bytes:
        """End of the body: decide if still undecided; return what was held."""
        if self._lexer is None:
            return b""
        self._give_up()
        return self._release(self._lexer.buf)

    def _replay(self, decisions: HeadDecisions, page: bytearray) -> bool:
        """Decide as for an earlier page this one starts like; False if none."""
        decision = decisions.find(page, self._settings)
        if decision is None:
            return False
        self._csp = list(decision.csp)
        if decision.point is None:
            self._outcome = decision.outcome
        else:
            self._conclude(decision.point)
        return True

    def _remember(self, token: _Token, page: bytearray) -> None:
        # Only tags: a text or raw-text token's end was judged by a look past it.
        if self._decisions is None or token.kind not in (_Kind.START, _Kind.END):
            return
        concluded = self._concluded
        self._decisions.keep(
            _Decision(
                settings=self._settings,
                prefix=bytes(page[: token.end]),
                point=concluded,
                outcome=self._outcome if concluded is None else None,
                csp=tuple(self._csp),
            )
        )

    def _on_token(self, token: _Token, low: bytearray) -> None:
        if token.kind is _Kind.UTF16:
            self._outcome = "utf16"
            return
        source = low[token.start : token.end]
        in_script = token.name == b"script" and token.kind is not _Kind.END
        if (in_script or token.kind is _Kind.START) and self._own_marker in source:
            self._outcome = "already"
        elif in_script and any(pattern in source for pattern in self._conflicts):
            self._outcome = "conflict"
        elif self._point is None:
            self._before_head(token)
        else:
            self._in_head(token, self._point)

    def _before_head(self, token: _Token) -> None:
        if token.kind is _Kind.TEXT:
            self._conclude_outside_head(token.start)
        elif token.kind is not _Kind.START:
            return  # stray end tags
        elif token.name == b"html":
            if _AMP_ATTRS & token.attrs.keys():
                self._outcome = "amp"
        elif token.name == b"head":
            self._point = token.end
        elif token.name == b"body":
            self._conclude(token.end)
        elif token.name in _HEAD_CONTENT and not self._xml:
            # The head's tags are optional: this one opens an implied head.
            self._point = token.start
            self._in_head(token, token.start)
        else:
            self._conclude_outside_head(token.start)

    def _conclude_outside_head(self, point: int) -> None:
        if self._xml:
            self._outcome = "no_marker"
        else:
            self._conclude(point)

    def _in_head(self, token: _Token, point: int) -> None:
        if token.kind is _Kind.START and token.name == b"meta":
            if _must_precede_tag(token.attrs) and token.end <= _PRESCAN:
                self._point = max(point, token.end)
            self._collect_csp(token.attrs)
        elif _ends_head(token):
            self._conclude(point)

    def _collect_csp(self, meta: Mapping[bytes, bytes]) -> None:
        equiv = meta.get(b"http-equiv", b"").lower()
        if equiv == b"content-security-policy" and b"content" in meta:
            self._csp.append(html.unescape(meta[b"content"].decode("latin-1")))

    def _give_up(self) -> None:
        """Decide with what has been seen: without a head there is no place."""
        if self._point is None:
            self._outcome = "no_marker"
        else:
            self._conclude(self._point)

    def _conclude(self, point: int) -> None:
        self._concluded = point
        result = self._decide(self._csp)
        if isinstance(result, str):
            self._outcome = result
        else:
            self._outcome = "injected"
            self._insert = (point, result)

    def _release(self, held: bytearray) -> bytes:
        if self._outcome is None:
            return b""
        self._lexer = None  # from now on, pass through
        if self._insert is None:
            return bytes(held)
        point, tag = self._insert
        view = memoryview(held)  # no copies of the page's halves
        return b"".join((view[:point], tag, view[point:]))
