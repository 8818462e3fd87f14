"""Server-side masking of rrweb batches, applied before anything is persisted.

The recorder in the browser masks too, but it is not trusted: this is the
guarantee. Every place a typed value can reach a batch (RECORDING-NOTES.md,
"Where a typed value can appear") is handled here:

- Form values (`value`, `checked`, `selected` of input/textarea/select/option,
  a textarea's text, Input events): masked when the site masks inputs, and
  always for passwords (also after a "show password" toggle: the id is
  remembered), hidden inputs, card fields, `data-rec-mask` / `rr-mask`
  regions, and ids never described to us. Otherwise the text rules apply.
  A masked Input event also loses `isChecked` (it is reset to False).
- Text rules, for page text, form values that are kept and text attributes:
  emails (when masked) and runs of 2+ digits (when numbers are masked; digits
  joined by spaces, dots, commas, dashes, slashes, parentheses or + count as
  one run, so phone numbers, amounts and dates become one MASK; a lone digit,
  "Step 1", is left). Card numbers (Luhn-valid runs of 13-19 digits, with
  spaces or dashes between groups) are always masked.
- CSS and script text (children of `<style>`/`<script>`, `style`, `_cssText`):
  only card numbers, since numbers there are sizes, not personal data.
- URLs (Meta href, the batch URL, href/src/action/srcset/..., URL-looking
  data-* values): userinfo always; in the query and fragment, parameters
  named like credentials always, and values by the text rules; in the path,
  emails and card numbers (not other numbers: ids in paths are how pages are
  told apart). A masked part becomes MASK percent-encoded.
- `rr-block` / `data-rec-block` elements keep only class, id, rr_width and
  rr_height; their children are dropped and their ids remembered.
- Custom events other than "identify" get the text rules on their payload.

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
    AttributeChange,
    Batch,
    CDataNode,
    CommentNode,
    CustomEvent,
    DocumentNode,
    ElementNode,
    FullSnapshotEvent,
    IncrementalSnapshotEvent,
    InputData,
    MetaEvent,
    MutationData,
    SerializedNode,
    TextChange,
    TextNode,
)
from gateway.config import RecordingConfig

MASK = "********"
_MASK_URL = quote(MASK, safe="")


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
_CODE_EL = 1 << 7  # style/script
_UNKNOWN_EL = 1 << 8  # an id we hold nothing for: could be any field
_VALUE_EL = 1 << 14  # button, li, progress...: `value` is page content, not typed
# Where a node is; inherited by descendants.
_SECRET = 1 << 9  # in a data-rec-mask / rr-mask region, or inside a secret field
_EDIT = 1 << 10  # typed text: contenteditable, a textarea's content
_CODE = 1 << 11  # CSS or script text
_BLOCKED = 1 << 12  # in an rr-block element: nothing is kept
_UNSEEN = 1 << 13  # the page was never described to us

_CONTEXT = _SECRET | _EDIT | _CODE | _BLOCKED | _UNSEEN
_SECRET_FIELD = _PASSWORD | _HIDDEN | _CARD
# A node removed and added again (a move) keeps the same id: these follow it.
_STICKY = _SECRET_FIELD | _SECRET | _BLOCKED

_TAG_FLAGS = {
    "input": _FIELD | _INPUT_EL,
    "textarea": _FIELD | _TEXTAREA,
    "select": _FIELD,
    "option": _FIELD,
    "style": _CODE_EL,
    "script": _CODE_EL,
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
        "aria-label",
        "aria-valuetext",
        "aria-description",
        "aria-placeholder",
        "aria-roledescription",
    }
)
_CSS_ATTRS = frozenset({"style", "_csstext"})
_SPECIAL_ATTRS = _URL_ATTRS | _TEXT_ATTRS | _CSS_ATTRS | {"srcset"}
# Ids a page may make us hold; past it, unknown ids are judged sensitive.
_MAX_IDS = 200_000

# ---------------------------------------------------------------- text rules

# Bounded parts keep the scan linear on long runs of address-like characters.
# Not "logo@2x.png": retina image names look like addresses.
_EMAIL = re.compile(
    r"[\w.!#$%&'*+/=?^`{|}~-]{1,64}(?:@|%40)(?!\d+(?:\.\d+)?x\.(?:png|jpe?g|gif|webp|avif|svg)\b)"
    r"[\w-]{1,63}(?:\.[\w-]{1,63})+"
)
_NUMBER = re.compile(r"[+(]?\d(?:[\s().,/+\u2010-\u2015-]{0,3}\d)+")
_CARD_RUN = re.compile(r"\d(?:[ \t\u00a0\u2010-\u2015-]{0,2}\d){12,}")
_DIGITS = re.compile(r"\d+")
_URL_SUSPECT = re.compile(r"[?#@%]|\d(?:[ +-]?\d){12}")
# What an ordinary attribute (class, id, ...) needs to hold to be worth a closer look.
_GENERIC_SUSPECT = re.compile(r"@|%40|//|\d(?:[ \t\u00a0\u2010-\u2015-]{0,2}\d){12}")
_URL_LIKE = re.compile(r"(?:[a-z][a-z0-9+.-]*:|/|\?)\S*\Z", re.IGNORECASE)
_ABSOLUTE_URL = re.compile(r"(?:[a-z][a-z0-9+.-]*:)?//\S*\Z", re.IGNORECASE)
_TOKEN_PARAM = re.compile(
    r"code|pass|pwd|secret|key|api_?key|apikey|session(?:_?id)?|sid|auth|authorization"
    r"|e-?mail|mail|sig|signature|otp|.*(?:token|password|passwd|secret|api_?key)"
    r"|x-amz-(?:credential|signature)",
    re.IGNORECASE,
)
_SRCSET_PARTS = re.compile(r"(\s+|,)")
_WEB_SCHEMES = frozenset({"", "http", "https", "ws", "wss", "ftp", "file"})
_CONTENT_SCHEMES = frozenset({"data", "blob", "javascript"})


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


def _number_text(value: int | float) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _child_context(flags: int) -> int:
    context = flags & _CONTEXT
    if flags & _TEXTAREA:
        context |= _EDIT
    if flags & _SECRET_FIELD:
        context |= _SECRET
    if flags & _CODE_EL:
        context |= _CODE
    return context


def _marks(flags: int, attrs: Mapping[str, Any]) -> int:
    """Flags learnt from attributes: all of them (snapshot) or the changed ones (mutation)."""
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
    """

    __slots__ = ("_counts", "_ids", "_unknown", "rules")

    def __init__(self, rules: MaskRules) -> None:
        self.rules = rules
        self._ids: dict[int, int] = {}
        # The context of an id not held: sensitive until a snapshot describes the page.
        self._unknown = _UNSEEN
        self._counts: Counter[str] = Counter()

    def mask(self, batch: Batch) -> Counter[str]:
        """Mask `batch` in place; return how many values were masked, by kind."""
        counts: Counter[str] = Counter()
        self._counts = counts
        batch.url = self._url(batch.url)
        for event in batch.events:
            if isinstance(event, IncrementalSnapshotEvent):
                data = event.data
                if isinstance(data, MutationData):
                    self._mutation(data)
                elif isinstance(data, InputData):
                    self._input(data)
            elif isinstance(event, FullSnapshotEvent):
                # New ids follow; only the password memory is worth keeping.
                self._ids = {i: _PASSWORD for i, flags in self._ids.items() if flags & _PASSWORD}
                self._unknown = 0
                self._walk(event.data.node, 0)
            elif isinstance(event, MetaEvent):
                event.data.href = self._url(event.data.href)
            elif isinstance(event, CustomEvent) and event.data.tag != "identify":
                # "identify" names the visitor on the site owner's purpose.
                event.data.payload = self._payload(event.data.payload, self._text)
        return counts

    # ------------------------------------------------------------ state

    def _remember(self, node_id: int, flags: int) -> None:
        if len(self._ids) >= _MAX_IDS and node_id not in self._ids:
            self._unknown |= _UNSEEN  # what we cannot hold we cannot judge
            return
        self._ids[node_id] = flags

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
        stack: list[tuple[SerializedNode, int]] = [(root, context)]
        while stack:
            node, context = stack.pop()
            if isinstance(node, ElementNode):
                child_context = self._element(node, context)
                if child_context is not None:
                    stack.extend((child, child_context) for child in node.childNodes)
            elif isinstance(node, TextNode):
                # `isStyle` is the browser's word; the parent's tag (context) decides.
                node.textContent = self._text_node(node.textContent, context)
                if context:
                    self._remember(node.id, context)
            elif isinstance(node, CDataNode | CommentNode):
                node.textContent = self._text_node(node.textContent, context & ~_CODE)
            elif isinstance(node, DocumentNode):  # also an iframe's document
                stack.extend((child, context) for child in node.childNodes)

    def _element(self, node: ElementNode, context: int) -> int | None:
        """Mask an element's attributes; the context of its children, None if dropped."""
        flags = context | (self._ids.get(node.id, 0) & _STICKY)
        flags |= _TAG_FLAGS.get(node.tagName.lower(), 0)
        attrs = node.attributes
        if attrs:
            flags = _marks(flags, attrs)
        if flags & _BLOCKED or node.needBlock:
            kept = {key: value for key, value in attrs.items() if key in _BLOCK_KEEP}
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
            if isinstance(node, ElementNode | DocumentNode):
                stack.extend(node.childNodes)

    def _text_node(self, text: str, context: int) -> str:
        if not text or text.isspace():
            return text
        if context & _CODE:
            return self._cards(text)
        if context & _BLOCKED:
            kind = "blocked"
        elif context & _SECRET:
            kind = "masked"
        elif context & _UNSEEN:
            kind = "unknown"
        elif context & _EDIT and self.rules.inputs:
            kind = "input"
        else:
            return self._text(text)
        self._counts[kind] += 1
        return MASK

    # ------------------------------------------------------------ attributes

    def _attributes(self, attrs: dict[str, Any], flags: int) -> None:
        dropped: list[str] = []
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
            masked = self._attribute(name, value, flags)
            if masked is not value:
                attrs[key] = masked
        for key in dropped:
            del attrs[key]

    def _attribute(self, name: str, value: Any, flags: int) -> Any:
        if isinstance(value, str):
            text = value
            generic = name not in _SPECIAL_ATTRS and not name.startswith("data-")
            if generic and not _GENERIC_SUSPECT.search(text):
                return value  # the common case: class, id, role...
        elif isinstance(value, int | float):
            text = _number_text(value)
        elif name == "style":  # a mutation's object of property changes
            return self._payload(value, self._cards)
        else:  # no other attribute has this shape: nothing unmodelled is stored
            self._counts["masked"] += 1
            return MASK
        if name == "value" and flags & (_FIELD | _UNKNOWN_EL):
            if not text:
                return value
            kind = self._value_kind(flags)
            if kind:
                self._counts[kind] += 1
                return MASK
            masked = self._text(text)
        elif name in _URL_ATTRS:
            masked = self._url(text)
        elif name == "srcset":
            masked = "".join(self._url(part) for part in _SRCSET_PARTS.split(text))
        elif name in _CSS_ATTRS:
            masked = self._cards(text)
        elif name in _TEXT_ATTRS or name.startswith("data-"):
            if flags & (_SECRET | _BLOCKED | _UNSEEN) and text.strip():
                self._counts["masked"] += 1
                return MASK
            masked = self._url(text) if _URL_LIKE.match(text) else self._text(text)
        elif _ABSOLUTE_URL.match(text):
            masked = self._url(text)
        else:  # class, id, aria-*, ...: numbers there are layout, not data
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
        # rrweb lists parents before children; judge others in that order all the same.
        waiting = {add.node.id for add in adds} if len(adds) > 1 else set()
        dropped: set[int] = set()
        todo = adds
        while todo:
            later = []
            for add in todo:
                if add.parentId in waiting and add.parentId != add.node.id:
                    later.append(add)
                    continue
                if not self._add(add):
                    dropped.add(id(add))
                waiting.discard(add.node.id)
            if len(later) == len(todo):  # a cycle: judge them as they stand
                waiting.clear()
            todo = later
        return [add for add in adds if id(add) not in dropped] if dropped else adds

    def _add(self, add: Addition) -> bool:
        parent = self._ids.get(add.parentId)
        if parent is not None and parent & _BLOCKED:
            self._block_all([add.node])
            self._counts["blocked"] += 1
            return False
        self._walk(add.node, self._unknown if parent is None else _child_context(parent))
        return True

    def _attribute_change(self, change: AttributeChange) -> None:
        held = self._ids.get(change.id)
        before = self._unknown | _UNKNOWN_EL if held is None else held
        flags = _marks(before, change.attributes)
        if flags != before:
            self._remember(change.id, flags)
            # Its existing descendants are not held: judge every id not held alike.
            if flags & ~before & (_SECRET | _BLOCKED):
                self._unknown |= _SECRET
            if flags & ~before & _EDIT:
                self._unknown |= _EDIT
        if flags & _BLOCKED:
            for key in [key for key in change.attributes if key not in _BLOCK_KEEP]:
                del change.attributes[key]
                self._counts["blocked"] += 1
        self._attributes(change.attributes, flags)

    def _text_change(self, change: TextChange) -> bool:
        """Mask a text change; False when it must be dropped."""
        held = self._ids.get(change.id)
        context = self._unknown if held is None else _child_context(held)
        if context & _BLOCKED:
            self._counts["blocked"] += 1
            return False
        if change.value is not None:
            change.value = self._text_node(change.value, context)
        return True

    def _input(self, data: InputData) -> None:
        held = self._ids.get(data.id)
        kind = self._value_kind(_UNKNOWN_EL if held is None else held)
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
        if self.rules.emails and ("@" in text or "%40" in text):
            text, count = _EMAIL.subn(MASK, text)
            if count:
                self._counts["email"] += count
        if numbers and self.rules.numbers:  # a card number is a run of digits too
            text, count = _NUMBER.subn(MASK, text)
            if count:
                self._counts["number"] += count
            return text
        return self._cards(text)

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

    # ------------------------------------------------------------ URLs

    def _url(self, url: str) -> str:
        if not _URL_SUSPECT.search(url):
            return url
        try:
            parts = urlsplit(url)
        except ValueError:  # an unbalanced IPv6 bracket: nothing to keep it for
            self._counts["url"] += 1
            return _MASK_URL
        scheme = parts.scheme.lower()
        if scheme in _CONTENT_SCHEMES:  # content, not an address
            return self._cards(url)
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

    def _segments(self, path: str, numbers: bool) -> str:
        segments = path.split("/")
        for index, segment in enumerate(segments):
            if segment:
                plain = unquote(segment)
                masked = self._text(plain, numbers)
                if masked != plain:
                    segments[index] = quote(masked, safe="")
        return "/".join(segments)

    def _query(self, query: str) -> str:
        if not query:
            return query
        pairs = query.split("&")
        for index, pair in enumerate(pairs):
            name, equals, value = pair.partition("=")
            if not equals:
                value, name = name, ""
            if value and equals and _TOKEN_PARAM.fullmatch(unquote_plus(name).strip()):
                pairs[index] = name + "=" + _MASK_URL
                continue
            plain = unquote_plus(value)
            masked = self._text(plain)
            if masked != plain:
                value = quote(masked, safe="")
                pairs[index] = name + "=" + value if equals else value
        return "&".join(pairs)


class MaskerCache:
    """A bounded LRU of PageMasker by (site, session, page); a page evicted or
    never seen starts with empty state (and so judges ids it never saw as sensitive)."""

    def __init__(self, capacity: int = 50_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._pages: OrderedDict[tuple[str, str, str], PageMasker] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pages)

    def get(self, site: str, session: str, page: str, rules: MaskRules) -> PageMasker:
        key = (site, session, page)
        masker = self._pages.get(key)
        if masker is None:
            masker = self._pages[key] = PageMasker(rules)
            if len(self._pages) > self.capacity:
                self._pages.popitem(last=False)
        else:
            self._pages.move_to_end(key)
            masker.rules = rules  # a reloaded config applies at once
        return masker
