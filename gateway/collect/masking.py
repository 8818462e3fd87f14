"""Server-side masking of rrweb batches, applied before anything is persisted.

The recorder in the browser masks too, but it is not trusted: this is the
guarantee. Every place a typed value can reach a batch (RECORDING-NOTES.md,
"Where a typed value can appear") is handled here:

- Form values (`value`, `checked`, `selected` of input/textarea/select/option,
  and `value` of any other element but buttons, li, progress..., custom
  elements included; a textarea's text, Input events): masked when the site
  masks inputs, and always for passwords (also after a "show password" toggle:
  the id is remembered), hidden inputs, card fields, `data-rec-mask` /
  `rr-mask` regions, and ids never described to us. Otherwise the text rules
  apply. A masked Input event also loses `isChecked` (it is reset to False).
  Secret fields keep only type, name, id, class, autocomplete, inputmode,
  placeholder, style and rr_* as they are; any other attribute becomes MASK.
  Attribute names are read case-insensitively.
- Text rules, for page text, form values that are kept and text attributes
  (title, alt, srcdoc, data-*, aria-*...): emails (when masked; found from
  each at-sign, also fullwidth or percent-encoded, in bounded windows) and
  runs of 2+ digits (when numbers are masked; digits joined by spaces, dots,
  commas, dashes, slashes, parentheses or + count as one run, so phone
  numbers, amounts and dates become one MASK; a lone digit, "Step 1", is
  left). Card numbers (Luhn-valid runs of 13-19 digits, with up to three
  spaces, dots, dashes, slashes, underscores or zero-width characters between
  groups) are always masked.
- CSS (children of `<style>`, `style`, `_cssText`, StyleSheetRule adds and
  replace(Sync), StyleDeclaration values, adopted style sheets, fonts): every
  `url(...)` by the URL rules, string literals by the text rules, the rest
  (sizes, comments) only for card numbers. Script text is masked outright.
- URLs (Meta href, the batch URL, href/src/action/srcset/..., URL-looking
  data-* values): userinfo always; in the query and fragment, every value,
  but those of a few harmless parameters (utm_*, page, sort, order, lang,
  locale, view, tab) when they hold no email, number or token; in the path,
  emails, card numbers and token-like runs (16+ URL-safe characters mixing
  letters and digits in long chunks, long hex, random-looking mixed case),
  not slugs or other numbers: ids in paths are how pages are told apart.
  tel:, sms:, mailto: and other non-web schemes get the text rules;
  javascript: URLs are masked whole; data: URLs keep media, text gets the
  text rules. A masked part becomes MASK percent-encoded.
- `rr-block` / `data-rec-block` elements keep only class, id, rr_width and
  rr_height; their children are dropped and their ids remembered.
- Regions made masked or editable by a later attribute change cover every
  later lookup, held ids included. A batch whose `seq` does not follow the
  last one seen for the page judges ids not held as never described.
- Custom "identify" events keep only id, name and email (strings of at most
  256 characters, card numbers masked); other custom events get the text
  rules on their payload.
- Mutation adds are judged parents first in one linear pass, whatever order
  they come in.

A mask is always MASK: its length says nothing about the secret's.
"""

from __future__ import annotations

import re
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, unquote_plus, urlsplit, urlunsplit

from gateway.collect.schema import (
    Addition,
    AdoptedStyleSheetData,
    AttributeChange,
    Batch,
    CDataNode,
    CommentNode,
    CustomElementData,
    CustomEvent,
    DocumentNode,
    ElementNode,
    FontData,
    FullSnapshotEvent,
    IncrementalSnapshotEvent,
    InputData,
    MetaEvent,
    MutationData,
    SerializedNode,
    StyleDeclarationData,
    StyleSheetRuleData,
    TextChange,
    TextNode,
)
from gateway.config import RecordingConfig

MASK = "********"
# Incremental events with text outside the DOM tree (see PageMasker._style_event).
_STYLE_EVENTS = frozenset(
    {StyleSheetRuleData, StyleDeclarationData, AdoptedStyleSheetData, FontData, CustomElementData}
)
_MASK_URL = quote(MASK, safe="")
# Event and node types are compared exactly (as decoded) throughout: isinstance
# against msgspec's Struct classes costs about a microsecond per check.


@dataclass(frozen=True, slots=True)
class MaskRules:
    inputs: bool
    numbers: bool
    emails: bool

    @classmethod
    def of(cls, rec: RecordingConfig) -> MaskRules:
        return cls(inputs=rec.mask_inputs, numbers=rec.mask_numbers, emails=rec.mask_emails)


# ---------------------------------------------------------------- node flags

# What an element is.
_FIELD = 1 << 0  # input, textarea, select, option: its value was typed or chosen
_INPUT_EL = 1 << 1  # an <input>: its `type` matters
_TEXTAREA = 1 << 2  # its text child is its value
_LABEL = 1 << 3  # submit/button/reset: the value is a visible label
_PASSWORD = 1 << 4
_HIDDEN = 1 << 5
_CARD = 1 << 6
_CODE_EL = 1 << 7  # style
_UNKNOWN_EL = 1 << 8  # an id we hold nothing for: could be any field
_VALUE_EL = 1 << 14  # button, li, progress...: `value` is page content, not typed
_SCRIPT_EL = 1 << 15  # script
# Where a node is; inherited by descendants.
_SECRET = 1 << 9  # in a data-rec-mask / rr-mask region, or inside a secret field
_EDIT = 1 << 10  # typed text: contenteditable, a textarea's content
_CODE = 1 << 11  # CSS text
_BLOCKED = 1 << 12  # in an rr-block element: nothing is kept
_UNSEEN = 1 << 13  # the page was never described to us
_SCRIPT = 1 << 16  # script text: masked outright

_CONTEXT = _SECRET | _EDIT | _CODE | _BLOCKED | _UNSEEN | _SCRIPT
_SECRET_FIELD = _PASSWORD | _HIDDEN | _CARD
# A node removed and added again (a move) keeps the same id: these follow it.
_STICKY = _SECRET_FIELD | _SECRET | _BLOCKED

_TAG_FLAGS = {
    "input": _FIELD | _INPUT_EL,
    "textarea": _FIELD | _TEXTAREA,
    "select": _FIELD,
    "option": _FIELD,
    "style": _CODE_EL,
    "script": _SCRIPT_EL,
    **dict.fromkeys(("button", "li", "meter", "progress", "data", "param", "output"), _VALUE_EL),
}
_TYPE_FLAGS = {
    "password": _PASSWORD,
    "hidden": _HIDDEN,
    "file": _SECRET,  # the browser's fake path holds the visitor's file name
    "submit": _LABEL,
    "button": _LABEL,
    "reset": _LABEL,
}
_PASSWORD_AUTOCOMPLETE = frozenset({"current-password", "new-password", "one-time-code"})
_CARD_NAME = re.compile(r"card|cvc|cvv|ccnum|cc[-_]?(?:number|csc|exp)", re.IGNORECASE)
_BLOCK_KEEP = frozenset({"class", "id", "rr_width", "rr_height"})
# What a secret field (password, hidden, card, a field in a masked region) keeps
# as it is; `value` and `placeholder` go through their own rules; rr_* too.
_SECRET_KEEP = frozenset(
    {
        "type",
        "name",
        "id",
        "class",
        "autocomplete",
        "inputmode",
        "placeholder",
        "style",
        "value",
        "data-rr-is-password",
    }
)
_STATE_ATTRS = frozenset({"checked", "selected"})
_URL_ATTRS = frozenset(
    {
        "href",
        "src",
        "action",
        "formaction",
        "poster",
        "cite",
        "background",
        "ping",
        "xlink:href",
        "data",
        "codebase",
        "longdesc",
        "manifest",
        "rr_src",
    }
)
_TEXT_ATTRS = frozenset(
    {
        "value",
        "placeholder",
        "title",
        "alt",
        "label",
        "summary",
        "content",
        "srcdoc",
    }
)
_TEXT_PREFIXES = ("data-", "aria-")
_CSS_ATTRS = frozenset({"style", "_csstext"})
_SPECIAL_ATTRS = _URL_ATTRS | _TEXT_ATTRS | _CSS_ATTRS | {"srcset"}
# Ids a page may make us hold; past it, unknown ids are judged sensitive.
_MAX_IDS = 200_000
# Custom "identify" events keep these, as strings of at most this length.
_IDENTIFY_KEYS = ("id", "name", "email")
_IDENTIFY_MAX = 256

# ---------------------------------------------------------------- text rules

# Emails are found from their at-sign (also fullwidth or percent-encoded), each
# part matched within a bounded window around it: linear time on any input.
_AT = re.compile(r"@|%40|\uff20|\ufe6b")
_LOCAL_PART = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]{1,64}")  # matched on the reversed text
# Not "logo@2x.png": retina image names look like addresses.
_DOMAIN = re.compile(
    r"(?!\d{1,8}(?:\.\d{1,8})?x\.(?:png|jpe?g|gif|webp|avif|svg)\b)"
    r"[\w-]{1,63}(?:\.[\w-]{1,63}){1,16}"
)
# What may sit between a card number's digit groups.
_SEP = r"[._/\s\u00a0\u200b-\u200d\u2060\u2010-\u2015-]{0,3}"
_NUMBER = re.compile(r"[+(]?\d(?:[\s().,/+\u2010-\u2015-]{0,3}\d)+")
_CARD_RUN = re.compile(r"\d(?:" + _SEP + r"\d){12,}")
_DIGITS = re.compile(r"\d+")
_ANY_DIGIT = re.compile(r"\d")
_URL_SUSPECT = re.compile(
    r"[?#@%\uff20\ufe6b]|\d(?:" + _SEP + r"\d){12}|[A-Za-z0-9_-]{16}", re.IGNORECASE
)
# What an ordinary attribute (class, id, ...) needs to hold to be worth a closer look.
_GENERIC_SUSPECT = re.compile(r"@|%40|\uff20|\ufe6b|//|\d(?:" + _SEP + r"\d){12}")
_URL_LIKE = re.compile(r"(?:[a-z][a-z0-9+.-]*:|/|\?)\S*\Z", re.IGNORECASE)
_ABSOLUTE_URL = re.compile(r"(?:[a-z][a-z0-9+.-]*:)?//\S*\Z", re.IGNORECASE)
_SCHEME = re.compile(r"\s*([a-z][a-z0-9+.-]*):", re.IGNORECASE)
# Query and fragment parameters whose value is kept when it looks harmless.
_SAFE_PARAMS = frozenset({"page", "sort", "order", "lang", "locale", "view", "tab"})
_PARAM_NAME = re.compile(r"[a-z0-9_.\[\]-]{1,64}")
_BARE_WORD = re.compile(r"[A-Za-z_-]{1,32}")
_SAFE_VALUE_MAX = 64
# Tokens: long runs of URL-safe characters, judged by _token_like.
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_-]{16,}")
_CHUNKS = re.compile(r"[-_]+")
_HEX = re.compile(r"[0-9a-f]{16,}", re.IGNORECASE)
_SRCSET_PARTS = re.compile(r"(\s+|,)")
_WEB_SCHEMES = frozenset({"", "http", "https", "ws", "wss", "ftp", "file"})
_MEDIA_DATA = re.compile(r"\s*(?:image|audio|video|font)/[\w.+-]+", re.IGNORECASE)
# CSS: where a comment, a string or a url() starts; where a string stops.
_CSS_START = re.compile(r"/\*|[\"']|url\(", re.IGNORECASE)
_CSS_STRING_STOP = {'"': re.compile(r'["\\\n]'), "'": re.compile(r"['\\\n]")}
_CSS_ESCAPE = re.compile(r"\\(?:([0-9a-fA-F]{1,6})[ \t\n]?|(.))", re.DOTALL)


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        if position & 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _has_card(run: str) -> bool:
    """A card number among a run's digit groups, starting and ending on a group boundary."""
    groups = _DIGITS.findall(run)
    if len(groups) > 64:  # not page text anyone reads; not worth the checks
        return True
    for start in range(len(groups)):
        digits = ""
        for group in groups[start:]:
            digits += group
            if len(digits) > 19:
                break
            if len(digits) >= 13 and _luhn(digits):
                return True
    return False


def _token_like(run: str) -> bool:
    """A run of 16+ URL-safe characters that reads as a secret, not as a slug.

    Slugs ("red-shoes-size-42") are words and numbers between dashes; tokens mix
    letters and digits within long chunks, are long hex (hashes, UUIDs), or are
    long chunks of random-looking mixed case.
    """
    if _HEX.fullmatch(run.replace("-", "")) and not run.isdigit() and not run.isalpha():
        return True
    for chunk in _CHUNKS.split(run):
        if len(chunk) < 12:
            continue
        has_digit = any(char.isdigit() for char in chunk)
        if has_digit and not chunk.isdigit():
            return True
        if len(chunk) >= 16 and not has_digit:
            upper = sum(char.isupper() for char in chunk[1:])
            lower = sum(char.islower() for char in chunk)
            if upper >= 2 and lower >= 2:
                return True
    return False


def _has_digit(text: str) -> bool:
    """`\\d` matches, found first by C-speed substring tests (a regex pays per character)."""
    for digit in "0123456789":  # a loop, not any(): no generator per text
        if digit in text:
            return True
    return not text.isascii() and _ANY_DIGIT.search(text) is not None


def _has_at(text: str) -> bool:
    """An at-sign in any of the forms `_AT` matches (substring tests: no regex per text)."""
    return "@" in text or "%40" in text or "\uff20" in text or "\ufe6b" in text


def _has_token(text: str) -> bool:
    return any(_token_like(match.group()) for match in _TOKEN_RUN.finditer(text))


def _number_text(value: int | float) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _lowered(attrs: Mapping[str, Any]) -> Mapping[str, Any]:
    """Attribute names as the browser reads them: HTML names are case-insensitive."""
    if all(key.islower() or not any(char.isupper() for char in key) for key in attrs):
        return attrs
    return {key.lower(): value for key, value in attrs.items()}


def _css_unescape(match: re.Match[str]) -> str:
    code, char = match.groups()
    if code is None:
        return str(char)
    point = int(code, 16)
    return chr(point) if 0 < point <= 0x10FFFF and not 0xD800 <= point <= 0xDFFF else "\ufffd"


def _css_escape(text: str, quote_char: str) -> str:
    text = text.replace("\\", "\\\\").replace(quote_char, "\\" + quote_char)
    return text.replace("\n", "\\a ")


def _child_context(flags: int) -> int:
    context = flags & _CONTEXT
    if flags & _TEXTAREA:
        context |= _EDIT
    if flags & _SECRET_FIELD:
        context |= _SECRET
    if flags & _CODE_EL:
        context |= _CODE
    if flags & _SCRIPT_EL:
        context |= _SCRIPT
    return context


def _marks(flags: int, attrs: Mapping[str, Any]) -> int:
    """Flags learnt from attributes (names lower-cased): all of them (snapshot) or
    the changed ones (mutation)."""
    if flags & (_INPUT_EL | _UNKNOWN_EL) and "type" in attrs:
        kind = attrs["type"]
        kind = kind.strip().lower() if isinstance(kind, str) else ""
        # A password stays one (sticky); only the label mark follows the type.
        flags = (flags & ~_LABEL) | _TYPE_FLAGS.get(kind, 0)
    if flags & (_FIELD | _UNKNOWN_EL):
        autocomplete = attrs.get("autocomplete")
        if isinstance(autocomplete, str):
            for token in autocomplete.lower().split():
                if token.startswith("cc-"):
                    flags |= _CARD
                elif token in _PASSWORD_AUTOCOMPLETE:
                    flags |= _PASSWORD
        for key in ("name", "id"):
            name = attrs.get(key)
            if isinstance(name, str) and _CARD_NAME.search(name):
                flags |= _CARD
        if attrs.get("data-rr-is-password") not in (None, False):  # rrweb's own mark
            flags |= _PASSWORD
    classes = attrs.get("class")
    if isinstance(classes, str) and "rr-" in classes:
        words = classes.split()
        if "rr-mask" in words:
            flags |= _SECRET
        if "rr-block" in words:
            flags |= _BLOCKED
    if attrs.get("data-rec-mask") is not None:
        flags |= _SECRET
    if attrs.get("data-rec-block") is not None:
        flags |= _BLOCKED
    editable = attrs.get("contenteditable")
    if editable is not None and editable is not False and str(editable).strip().lower() != "false":
        flags |= _EDIT
    return flags


# ---------------------------------------------------------------- the masker


class PageMasker:
    """Per (session, page) state: which node ids are inputs/passwords/hidden/card/
    contenteditable/masked-or-blocked subtrees, learned from full snapshots and
    mutation adds, so later Input events and text/attribute mutations can be
    judged by id.

    Only ids that are fields or sit in a special region are held; an id not
    held is plain page content once a full snapshot was seen, and sensitive
    before. Input events and `value` changes on ids not held are always masked.
    Regions made masked or editable after a snapshot (an attribute change) make
    every later lookup, held ids included, judged as inside such a region.
    A batch whose `seq` is not the next one expected for the page (a gap, or a
    late one) is judged as if the page had not been seen for ids not held.
    """

    __slots__ = ("_counts", "_gap", "_ids", "_next_seq", "_unknown", "rules")

    def __init__(self, rules: MaskRules) -> None:
        self.rules = rules
        self._ids: dict[int, int] = {}
        # The context of an id not held: sensitive until a snapshot describes the page.
        self._unknown = _UNSEEN
        # _UNSEEN while masking a batch that does not follow the last one seen.
        self._gap = 0
        self._next_seq: int | None = None
        self._counts: Counter[str] = Counter()

    def mask(self, batch: Batch) -> Counter[str]:
        """Mask `batch` in place; return how many values were masked, by kind."""
        counts: Counter[str] = Counter()
        self._counts = counts
        expected = self._next_seq
        self._gap = _UNSEEN if expected is not None and batch.seq != expected else 0
        self._next_seq = batch.seq + 1 if expected is None else max(expected, batch.seq + 1)
        try:
            self._mask(batch)
        finally:
            self._gap = 0
        return counts

    def _mask(self, batch: Batch) -> None:
        batch.url = self._url(batch.url)
        for event in batch.events:
            if type(event) is IncrementalSnapshotEvent:
                data = event.data
                if type(data) is MutationData:
                    self._mutation(data)
                elif type(data) is InputData:
                    self._input(data)
                elif type(data) in _STYLE_EVENTS:  # not per mouse move: most events are those
                    self._style_event(data)
            elif type(event) is FullSnapshotEvent:
                # New ids follow; only the password memory is worth keeping.
                self._ids = {i: _PASSWORD for i, flags in self._ids.items() if flags & _PASSWORD}
                self._unknown = 0
                self._gap = 0
                self._walk(event.data.node, 0)
            elif type(event) is MetaEvent:
                event.data.href = self._url(event.data.href)
            elif type(event) is CustomEvent:
                if event.data.tag == "identify":
                    event.data.payload = self._identify(event.data.payload)
                else:
                    event.data.payload = self._payload(event.data.payload, self._text)

    def _style_event(self, data: object) -> None:
        """CSS, fonts and custom element names sent outside the DOM tree."""
        if isinstance(data, StyleSheetRuleData):
            for rule in data.adds or ():
                rule.rule = self._css(rule.rule)
            if data.replace is not None:
                data.replace = self._css(data.replace)
            if data.replaceSync is not None:
                data.replaceSync = self._css(data.replaceSync)
        elif isinstance(data, StyleDeclarationData):
            if data.set is not None and data.set.value is not None:
                data.set.value = self._css(data.set.value)
        elif isinstance(data, AdoptedStyleSheetData):
            for style in data.styles or ():
                for rule in style.rules:
                    rule.rule = self._css(rule.rule)
        elif isinstance(data, FontData):
            data.family = self._text(data.family)
            source = data.fontSource
            data.fontSource = self._url(source) if _URL_LIKE.match(source) else self._css(source)
            if data.descriptors:
                data.descriptors = {key: self._text(v) for key, v in data.descriptors.items()}
        elif isinstance(data, CustomElementData) and data.define is not None:
            data.define.name = self._text(data.define.name)

    def _identify(self, payload: Any) -> dict[str, str]:
        """The visitor's id, name and email, as the site owner asked; nothing else."""
        kept: dict[str, str] = {}
        if isinstance(payload, dict):
            for key in _IDENTIFY_KEYS:
                value = payload.get(key)
                if isinstance(value, str) and len(value) <= _IDENTIFY_MAX:
                    kept[key] = self._cards(value)
            dropped = len(payload) - len(kept)
        else:
            dropped = payload is not None
        if dropped:
            self._counts["masked"] += dropped
        return kept

    # ------------------------------------------------------------ state

    def _remember(self, node_id: int, flags: int) -> None:
        if len(self._ids) >= _MAX_IDS and node_id not in self._ids:
            self._unknown |= _UNSEEN  # what we cannot hold we cannot judge
            return
        self._ids[node_id] = flags

    def _context_of(self, node_id: int) -> int:
        """The context of `node_id`'s children (or of a text node's own text)."""
        held = self._ids.get(node_id)
        if held is None:
            return self._unknown | self._gap
        # Regions switched on later cover held ids too: they are not held by region.
        return _child_context(held) | self._unknown

    def _value_kind(self, flags: int) -> str | None:
        """Why a form value must be masked, or None for the text rules."""
        if flags & _PASSWORD:
            return "password"
        if flags & _HIDDEN:
            return "hidden"
        if flags & _CARD:
            return "card"
        if flags & _BLOCKED:
            return "blocked"
        if flags & _SECRET:
            return "masked"
        if flags & (_UNSEEN | _UNKNOWN_EL):
            return "unknown"
        if flags & _LABEL or not self.rules.inputs:
            return None
        return "input"

    # ------------------------------------------------------------ nodes

    def _walk(self, root: SerializedNode, context: int) -> None:
        # Sibling lists, not single nodes, on the stack: one entry per element with children.
        stack: list[tuple[list[SerializedNode], int]] = [([root], context)]
        while stack:
            nodes, context = stack.pop()
            for node in nodes:
                if type(node) is ElementNode:
                    child_context = self._element(node, context)
                    if child_context is not None and node.childNodes:
                        stack.append((node.childNodes, child_context))
                elif type(node) is TextNode:
                    # `isStyle` is the browser's word; the parent's tag (context) decides.
                    node.textContent = self._text_node(node.textContent, context)
                    if context:
                        self._remember(node.id, context)
                elif type(node) is CDataNode or type(node) is CommentNode:
                    node.textContent = self._text_node(node.textContent, context & ~_CODE)
                elif type(node) is DocumentNode:  # also an iframe's document
                    stack.append((node.childNodes, context))

    def _element(self, node: ElementNode, context: int) -> int | None:
        """Mask an element's attributes; the context of its children, None if dropped."""
        flags = context | (self._ids.get(node.id, 0) & _STICKY)
        flags |= _TAG_FLAGS.get(node.tagName.lower(), 0)
        attrs = node.attributes
        if attrs:
            lowered = _lowered(attrs)
            if "value" in lowered and not flags & (_FIELD | _VALUE_EL):
                # A custom element's value (<my-input value=...>) is typed like an input's.
                flags |= _FIELD | _INPUT_EL
            flags = _marks(flags, lowered)
        if flags & _BLOCKED or node.needBlock:
            kept = {key: value for key, value in attrs.items() if key.lower() in _BLOCK_KEEP}
            self._attributes(kept, 0)
            node.attributes = kept
            self._block_all(node.childNodes)
            node.childNodes = []
            self._remember(node.id, flags | _BLOCKED)
            self._counts["blocked"] += 1
            return None
        if attrs:
            self._attributes(attrs, flags)
        if flags:
            self._remember(node.id, flags)
        return _child_context(flags)

    def _block_all(self, nodes: list[SerializedNode]) -> None:
        """Remember dropped nodes, so later changes to them are dropped too."""
        stack = list(nodes)
        while stack:
            node = stack.pop()
            self._remember(node.id, _BLOCKED)
            if type(node) is ElementNode or type(node) is DocumentNode:
                stack.extend(node.childNodes)

    def _text_node(self, text: str, context: int) -> str:
        if not text or text.isspace():
            return text
        if context & _SCRIPT:
            kind = "masked"  # rrweb sends a placeholder: anything else is not for us
        elif context & _CODE:
            return self._css(text)
        elif context & _BLOCKED:
            kind = "blocked"
        elif context & _SECRET:
            kind = "masked"
        elif context & _UNSEEN:
            kind = "unknown"
        elif context & _EDIT and self.rules.inputs:
            kind = "input"
        else:
            return self._text(text)
        if text == MASK:
            return text
        self._counts[kind] += 1
        return MASK

    # ------------------------------------------------------------ attributes

    def _attributes(self, attrs: dict[str, Any], flags: int) -> None:
        dropped: list[str] = []
        # A secret field keeps only what describes it, not what may hold its value.
        strict = bool(flags & _SECRET_FIELD or (flags & _SECRET and flags & _FIELD))
        for key, value in attrs.items():
            name = key.lower()
            if name in _STATE_ATTRS:
                # Which box is ticked is an answer too.
                if flags & (_FIELD | _UNKNOWN_EL) and value not in (None, False):
                    kind = self._value_kind(flags)
                    if kind:
                        self._counts[kind] += 1
                        dropped.append(key)
                continue
            if value is None or isinstance(value, bool):
                continue
            if strict and name not in _SECRET_KEEP and not name.startswith("rr_"):
                if value != "" and value != MASK:
                    self._counts[self._value_kind(flags) or "masked"] += 1
                    attrs[key] = MASK
                continue
            masked = self._attribute(name, value, flags)
            if masked is not value:
                attrs[key] = masked
        for key in dropped:
            del attrs[key]

    def _attribute(self, name: str, value: Any, flags: int) -> Any:
        if isinstance(value, str):
            text = value
            generic = name not in _SPECIAL_ATTRS and not name.startswith(_TEXT_PREFIXES)
            if generic and not _GENERIC_SUSPECT.search(text):
                return value  # the common case: class, id, role...
        elif isinstance(value, int | float):
            text = _number_text(value)
        elif name == "style":  # a mutation's object of property changes
            return self._payload(value, self._css)
        else:  # no other attribute has this shape: nothing unmodelled is stored
            self._counts["masked"] += 1
            return MASK
        if name == "value" and not flags & _VALUE_EL:
            # Any element's value, custom elements' too, but a button's label.
            if not text:
                return value
            kind = self._value_kind(flags)
            if kind:
                if text == MASK:
                    return value
                self._counts[kind] += 1
                return MASK
            masked = self._text(text)
        elif name in _URL_ATTRS:
            masked = self._url(text)
        elif name == "srcset":
            masked = "".join(self._url(part) for part in _SRCSET_PARTS.split(text))
        elif name in _CSS_ATTRS:
            masked = self._css(text)
        elif name in _TEXT_ATTRS or name.startswith(_TEXT_PREFIXES):
            if flags & (_SECRET | _BLOCKED | _UNSEEN) and text.strip():
                if text == MASK:
                    return value
                self._counts["masked"] += 1
                return MASK
            masked = self._url(text) if _URL_LIKE.match(text) else self._text(text)
        elif _ABSOLUTE_URL.match(text):
            masked = self._url(text)
        else:  # class, id, role...: numbers there are layout, not data
            masked = self._text(text, numbers=False)
        return value if masked == text else masked

    # ------------------------------------------------------------ incremental events

    def _mutation(self, data: MutationData) -> None:
        # The order the replayer applies them in: nodes exist before they change.
        if data.adds:
            data.adds = self._adds(data.adds)
        for change in data.attributes:
            self._attribute_change(change)
        if data.texts:
            data.texts = [change for change in data.texts if self._text_change(change)]

    def _adds(self, adds: list[Addition]) -> list[Addition]:
        """Judge adds parents first, whatever order they come in: O(nodes)."""
        count = len(adds)
        if count == 1:
            return adds if self._add(adds[0]) else []
        # Which add carries each id, nested nodes included.
        owner: dict[int, int] = {}
        for index, add in enumerate(adds):
            stack: list[SerializedNode] = [add.node]
            while stack:
                node = stack.pop()
                owner.setdefault(node.id, index)
                if type(node) is ElementNode or type(node) is DocumentNode:
                    stack.extend(node.childNodes)
        after: dict[int, list[int]] = {}
        roots: list[int] = []
        for index, add in enumerate(adds):
            parent = owner.get(add.parentId)
            if parent is None or parent == index:
                roots.append(index)
            else:
                after.setdefault(parent, []).append(index)
        done = [False] * count
        kept = [True] * count
        # Then any left over: a cycle, judged as it stands.
        for start in (*roots, *range(count)):
            if done[start]:
                continue
            todo = [start]
            while todo:
                index = todo.pop()
                if done[index]:
                    continue
                done[index] = True
                kept[index] = self._add(adds[index])
                todo.extend(reversed(after.get(index, ())))
        return adds if all(kept) else [add for add, keep in zip(adds, kept, strict=True) if keep]

    def _add(self, add: Addition) -> bool:
        parent = self._ids.get(add.parentId)
        if parent is not None and parent & _BLOCKED:
            self._block_all([add.node])
            self._counts["blocked"] += 1
            return False
        self._walk(add.node, self._context_of(add.parentId))
        return True

    def _attribute_change(self, change: AttributeChange) -> None:
        held = self._ids.get(change.id)
        before = self._unknown | self._gap | _UNKNOWN_EL if held is None else held
        flags = _marks(before, _lowered(change.attributes))
        if flags != before:
            self._remember(change.id, flags)
            # Its existing descendants are not held: judge every id not held alike.
            if flags & ~before & (_SECRET | _BLOCKED):
                self._unknown |= _SECRET
            if flags & ~before & _EDIT:
                self._unknown |= _EDIT
        if flags & _BLOCKED:
            for key in [key for key in change.attributes if key.lower() not in _BLOCK_KEEP]:
                del change.attributes[key]
                self._counts["blocked"] += 1
        self._attributes(change.attributes, flags | self._unknown)

    def _text_change(self, change: TextChange) -> bool:
        """Mask a text change; False when it must be dropped."""
        context = self._context_of(change.id)
        if context & _BLOCKED:
            self._counts["blocked"] += 1
            return False
        if change.value is not None:
            change.value = self._text_node(change.value, context)
        return True

    def _input(self, data: InputData) -> None:
        held = self._ids.get(data.id)
        kind = self._value_kind(_UNKNOWN_EL if held is None else held | self._unknown)
        if kind:
            if data.text:
                data.text = MASK
                self._counts[kind] += 1
            data.isChecked = False
        else:
            data.text = self._text(data.text)

    # ------------------------------------------------------------ text rules

    def _text(self, text: str, numbers: bool = True) -> str:
        """Emails and numbers as the site says; card numbers always."""
        if not text or text.isspace():  # most text nodes: the blanks between elements
            return text
        if self.rules.emails and _has_at(text):
            text = self._emails(text)
        if not _has_digit(text):  # numbers and card numbers both need a digit
            return text
        if numbers and self.rules.numbers:  # a card number is a run of digits too
            text, count = _NUMBER.subn(MASK, text)
            if count:
                self._counts["number"] += count
            return text
        return self._cards(text)

    def _emails(self, text: str) -> str:
        """Each address, found from its at-sign within bounded windows: linear time."""
        spans: list[tuple[int, int]] = []
        reverse = ""
        end = 0  # where the last address ended
        for at in _AT.finditer(text):
            start = at.start()
            if start < end:
                continue
            domain = _DOMAIN.match(text, at.end())
            if domain is None:
                continue
            if not reverse:
                reverse = text[::-1]
            local = _LOCAL_PART.match(reverse, len(text) - start)
            if local is None:
                continue
            begin = max(start - len(local.group()), end)
            if begin == start:
                continue
            spans.append((begin, domain.end()))
            end = domain.end()
        if not spans:
            return text
        self._counts["email"] += len(spans)
        parts: list[str] = []
        last = 0
        for begin, stop in spans:
            parts += (text[last:begin], MASK)
            last = stop
        parts.append(text[last:])
        return "".join(parts)

    def _cards(self, text: str) -> str:
        if not _CARD_RUN.search(text):
            return text

        def card(match: re.Match[str]) -> str:
            if not _has_card(match.group()):
                return match.group()
            self._counts["card"] += 1
            return MASK

        return _CARD_RUN.sub(card, text)

    def _payload(self, value: Any, rule: Callable[[str], str]) -> Any:
        """`rule` on the strings and numbers of a JSON value, in place where it is a container."""
        if isinstance(value, str):
            return rule(value)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            text = _number_text(value)
            return value if rule(text) == text else MASK
        stack = [value]
        while stack:
            item = stack.pop()
            entries = list(item.items() if isinstance(item, dict) else enumerate(item))
            for key, entry in entries:
                if isinstance(entry, dict | list):
                    stack.append(entry)
                else:
                    masked = self._payload(entry, rule)
                    if masked is not entry:
                        item[key] = masked
        return value

    # ------------------------------------------------------------ CSS

    def _css(self, css: str) -> str:
        """CSS text: every url() by the URL rules, strings by the text rules, the
        rest (sizes, colours, comments) only for card numbers. One linear scan."""
        found = _CSS_START.search(css)
        if found is None:
            return self._cards(css)
        parts: list[str] = []
        plain = 0  # where the text not yet judged starts
        while found is not None:
            start, token = found.start(), found.group()
            parts.append(self._cards(css[plain:start]))
            if token == "/*":
                close = css.find("*/", found.end())
                stop = len(css) if close < 0 else close + 2
                parts.append(self._cards(css[start:stop]))
            elif token in ('"', "'"):
                stop = self._css_string(css, start, parts, url=False)
            else:
                stop = self._css_url(css, found.end(), parts)
            plain = stop
            found = _CSS_START.search(css, stop)
        parts.append(self._cards(css[plain:]))
        return "".join(parts)

    def _css_string(self, css: str, start: int, parts: list[str], url: bool) -> int:
        """Judge the string opening at `start`; append it to `parts`; return its end."""
        quote_char = css[start]
        stops = _CSS_STRING_STOP[quote_char]
        position = start + 1
        while True:
            stop = stops.search(css, position)
            if stop is None:
                end = close = len(css)
                break
            if stop.group() == "\\":
                position = stop.end() + 1
                continue
            end = stop.start()
            close = end + 1 if stop.group() == quote_char else end
            break
        raw = css[start + 1 : end]
        plain = _CSS_ESCAPE.sub(_css_unescape, raw) if "\\" in raw else raw
        use_url = url or _ABSOLUTE_URL.match(plain)
        masked = self._url(plain) if use_url else self._text(plain)
        body = raw if masked == plain else _css_escape(masked, quote_char)
        parts.append(quote_char + body + css[end:close])
        return close

    def _css_url(self, css: str, position: int, parts: list[str]) -> int:
        """Judge a url( ... ) whose text starts at `position`; return its end."""
        parts.append(css[position - 4 : position])
        while position < len(css) and css[position] in " \t\n\r\f":
            parts.append(css[position])
            position += 1
        if position < len(css) and css[position] in "\"'":
            position = self._css_string(css, position, parts, url=True)
            close = css.find(")", position)
            stop = len(css) if close < 0 else close + 1
            parts.append(self._cards(css[position:stop]))
            return stop
        close = css.find(")", position)
        stop = len(css) if close < 0 else close
        inner = css[position:stop]
        address = inner.strip()
        masked = self._url(address) if address else address
        parts.append(inner if masked == address else inner.replace(address, masked, 1))
        return stop

    # ------------------------------------------------------------ URLs

    def _url(self, url: str) -> str:
        scheme_match = _SCHEME.match(url)
        scheme = scheme_match.group(1).lower() if scheme_match else ""
        if scheme in _WEB_SCHEMES and not _URL_SUSPECT.search(url):
            return url
        if scheme == "javascript":  # script, not an address: nothing to keep
            masked = "javascript:" + _MASK_URL
            if url != masked:
                self._counts["url"] += 1
            return masked
        if scheme == "data":
            return self._data_url(url)
        if scheme == "blob":  # an origin and a random id
            return self._cards(url)
        try:
            parts = urlsplit(url)
        except ValueError:  # an unbalanced IPv6 bracket: nothing to keep it for
            self._counts["url"] += 1
            return _MASK_URL
        netloc = parts.netloc
        if "@" in netloc:  # user:password@
            netloc = _MASK_URL + "@" + netloc.rpartition("@")[2]
        # tel:, sms:, mailto: hold the address in the path.
        path = self._segments(parts.path, numbers=scheme not in _WEB_SCHEMES)
        query = self._query(parts.query)
        fragment = parts.fragment
        if "=" in fragment:  # #access_token=...&... or #/route?email=...
            route, mark, rest = fragment.partition("?")
            if mark:
                fragment = self._segments(route, numbers=True) + "?" + self._query(rest)
            else:
                fragment = self._query(fragment)
        elif fragment:
            fragment = self._segments(fragment, numbers=True)
        changed = (netloc, path, query, fragment) != (
            parts.netloc,
            parts.path,
            parts.query,
            parts.fragment,
        )
        if not changed:
            return url
        self._counts["url"] += 1
        return urlunsplit((parts.scheme, netloc, path, query, fragment))

    def _data_url(self, url: str) -> str:
        """Media kept (cards aside); other inline documents by the text rules."""
        header, comma, body = url.partition(",")
        if not comma:
            return self._cards(url)
        media = _MEDIA_DATA.match(header, header.index(":") + 1)
        if ";base64" in header.lower():
            if media:
                return self._cards(url)
            masked = _MASK_URL  # text we cannot read here
        else:
            plain = unquote(body)
            # Coordinates in an SVG are numbers too, but not personal ones.
            masked_plain = self._text(plain, numbers=media is None)
            masked = body if masked_plain == plain else quote(masked_plain, safe="")
        if masked == body:
            return url
        self._counts["url"] += 1
        return header + comma + masked

    def _segments(self, path: str, numbers: bool) -> str:
        segments = path.split("/")
        for index, segment in enumerate(segments):
            if segment:
                plain = unquote(segment)
                masked = self._text(plain, numbers)
                if _TOKEN_RUN.search(masked):
                    masked = _TOKEN_RUN.sub(
                        lambda run: MASK if _token_like(run.group()) else run.group(), masked
                    )
                if masked != plain:
                    segments[index] = quote(masked, safe="")
        return "/".join(segments)

    def _query(self, query: str) -> str:
        """Every value masked but a few harmless parameters' harmless values."""
        if not query:
            return query
        pairs = query.split("&")
        for index, pair in enumerate(pairs):
            name, equals, value = pair.partition("=")
            if not equals:  # a bare word is a flag; anything else may be a value
                plain = unquote_plus(name)
                if plain and not (_BARE_WORD.fullmatch(plain) and not _has_token(plain)):
                    pairs[index] = _MASK_URL
                continue
            key = unquote_plus(name).strip().lower()
            if not _PARAM_NAME.fullmatch(key) or _has_token(key):
                name = _MASK_URL  # a name that holds data itself
            if value and value != _MASK_URL and not self._harmless(key, unquote_plus(value)):
                value = _MASK_URL
            pairs[index] = name + "=" + value
        return "&".join(pairs)

    @staticmethod
    def _harmless(name: str, value: str) -> bool:
        if not (name.startswith("utm_") or name in _SAFE_PARAMS):
            return False
        return (
            len(value) <= _SAFE_VALUE_MAX
            and not _AT.search(value)
            and not _NUMBER.search(value)
            and not _CARD_RUN.search(value)
            and not _has_token(value)
        )


class MaskerCache:
    """A bounded LRU of PageMasker by (site, session, page); a page evicted or
    never seen starts with empty state (and so judges ids it never saw as sensitive).

    Bounded twice: by pages, and by node ids held across all pages, since page
    ids are the client's choice and one page can hold up to _MAX_IDS ids.
    """

    def __init__(self, capacity: int = 50_000, max_ids: int = 1_000_000) -> None:
        if capacity < 1 or max_ids < 1:
            raise ValueError("capacity and max_ids must be at least 1")
        self.capacity = capacity
        self.max_ids = max_ids
        self._pages: OrderedDict[tuple[str, str, str], PageMasker] = OrderedDict()
        # Ids each page held when last accounted, and their sum.
        self._sizes: dict[tuple[str, str, str], int] = {}
        self._total = 0
        self._last: tuple[str, str, str] | None = None

    def __len__(self) -> int:
        return len(self._pages)

    @property
    def held_ids(self) -> int:
        self._account()
        return self._total

    def get(self, site: str, session: str, page: str, rules: MaskRules) -> PageMasker:
        # The page handed out last has masked a batch since: count what it holds now.
        self._account()
        key = (site, session, page)
        masker = self._pages.get(key)
        if masker is None:
            masker = self._pages[key] = PageMasker(rules)
            self._sizes[key] = 0
        else:
            self._pages.move_to_end(key)
            masker.rules = rules  # a reloaded config applies at once
        while len(self._pages) > 1 and (
            len(self._pages) > self.capacity or self._total > self.max_ids
        ):
            oldest, _ = self._pages.popitem(last=False)
            self._total -= self._sizes.pop(oldest)
        self._last = key
        return masker

    def _account(self) -> None:
        key = self._last
        if key is None or key not in self._pages:
            return
        size = len(self._pages[key]._ids)
        self._total += size - self._sizes[key]
        self._sizes[key] = size
