"""The batch a recorder posts, and rrweb 2.x's events, as msgspec Structs.

Decoding is the first gate: anything that does not fit is a 400 that names
the field (msgspec's path, e.g. `$.events[3].data.source`). Fields rrweb may
add in later versions are ignored, which also means they are never stored:
nothing the gateway has not modelled, and so masked, can reach the disk.
Event kinds that carry arbitrary payloads (canvas drawing commands, console
logs, third-party plugins) are decoded loosely and dropped by the handler.

Shapes follow rrweb's packages/types and rrweb-snapshot (see
../shared/RECORDING-NOTES.md).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

# Attribute values in snapshots: string, number, true, or null (removed).
AttrValue = str | int | float | bool | None
# In mutations a `style` attribute may also be an object of property changes.
MutationAttrValue = str | int | float | bool | None | dict[str, Any]


# gc=False: a batch decodes into hundreds of structs that never form a cycle (they
# only hold data), so the cyclic collector need not track them: it ran ~10 times
# less often under collect load, and its full passes no longer walk queued batches.
class _Struct(msgspec.Struct, omit_defaults=True, rename=None, gc=False):
    pass


# Keys rrweb's replayer reads unconditionally (`for (c of n.childNodes)`,
# `d.adds.forEach`, `createTextNode(n.textContent)`) must be encoded even when
# empty: omit_defaults drops `= []`, `= {}` and `= ""`, not a factory's value.
def _empty_str() -> str:
    return ""


def _empty_list() -> list[Any]:
    return []


def _empty_dict() -> dict[str, Any]:
    return {}


# ---------------------------------------------------------------- serialized nodes


class DocumentNode(_Struct, tag_field="type", tag=0):
    id: int
    childNodes: list[SerializedNode]
    compatMode: str | None = None
    rootId: int | None = None


class DocumentTypeNode(_Struct, tag_field="type", tag=1):
    id: int
    name: str = msgspec.field(default_factory=_empty_str)
    publicId: str = msgspec.field(default_factory=_empty_str)
    systemId: str = msgspec.field(default_factory=_empty_str)
    rootId: int | None = None


class ElementNode(_Struct, tag_field="type", tag=2):
    id: int
    tagName: str
    attributes: dict[str, AttrValue] = msgspec.field(default_factory=_empty_dict)
    childNodes: list[SerializedNode] = msgspec.field(default_factory=_empty_list)
    isSVG: bool | None = None
    needBlock: bool | None = None
    isCustom: bool | None = None
    rootId: int | None = None
    isShadowHost: bool | None = None
    isShadow: bool | None = None


class TextNode(_Struct, tag_field="type", tag=3):
    id: int
    textContent: str = msgspec.field(default_factory=_empty_str)
    isStyle: bool | None = None
    rootId: int | None = None


class CDataNode(_Struct, tag_field="type", tag=4):
    id: int
    textContent: str = msgspec.field(default_factory=_empty_str)
    rootId: int | None = None


class CommentNode(_Struct, tag_field="type", tag=5):
    id: int
    textContent: str = msgspec.field(default_factory=_empty_str)
    rootId: int | None = None


SerializedNode = DocumentNode | DocumentTypeNode | ElementNode | TextNode | CDataNode | CommentNode


# ---------------------------------------------------------------- incremental data


class TextChange(_Struct):
    id: int
    value: str | None


class AttributeChange(_Struct):
    id: int
    attributes: dict[str, MutationAttrValue]


class Removal(_Struct):
    parentId: int
    id: int
    isShadow: bool | None = None


class Addition(_Struct):
    parentId: int
    node: SerializedNode
    nextId: int | None = None
    previousId: int | None = None


class MutationData(_Struct, tag_field="source", tag=0):
    texts: list[TextChange] = msgspec.field(default_factory=_empty_list)
    attributes: list[AttributeChange] = msgspec.field(default_factory=_empty_list)
    removes: list[Removal] = msgspec.field(default_factory=_empty_list)
    adds: list[Addition] = msgspec.field(default_factory=_empty_list)
    isAttachIframe: bool | None = None


class Position(_Struct):
    x: float
    y: float
    id: int
    timeOffset: float


class MouseMoveData(_Struct, tag_field="source", tag=1):
    positions: list[Position]


class MouseInteractionData(_Struct, tag_field="source", tag=2):
    type: int
    id: int
    x: float | None = None
    y: float | None = None
    pointerType: int | None = None


class ScrollData(_Struct, tag_field="source", tag=3):
    id: int
    x: float
    y: float


class ViewportResizeData(_Struct, tag_field="source", tag=4):
    width: float
    height: float


class InputData(_Struct, tag_field="source", tag=5):
    id: int
    text: str
    isChecked: bool = False
    userTriggered: bool | None = None


class TouchMoveData(_Struct, tag_field="source", tag=6):
    positions: list[Position]


class MediaInteractionData(_Struct, tag_field="source", tag=7):
    type: int
    id: int
    currentTime: float | None = None
    volume: float | None = None
    muted: bool | None = None
    loop: bool | None = None
    playbackRate: float | None = None


class StyleRuleAdd(_Struct):
    rule: str
    index: int | list[int] | None = None


class StyleRuleRemove(_Struct):
    index: int | list[int]


class StyleSheetRuleData(_Struct, tag_field="source", tag=8):
    id: int | None = None
    styleId: int | None = None
    adds: list[StyleRuleAdd] | None = None
    removes: list[StyleRuleRemove] | None = None
    replace: str | None = None
    replaceSync: str | None = None


class CanvasMutationData(_Struct, tag_field="source", tag=9):
    id: int


class FontData(_Struct, tag_field="source", tag=10):
    family: str
    fontSource: str
    buffer: bool
    descriptors: dict[str, str] | None = None


class LogData(_Struct, tag_field="source", tag=11):
    level: str | None = None


class DragData(_Struct, tag_field="source", tag=12):
    positions: list[Position]


class StyleSet(_Struct):
    property: str
    value: str | None
    priority: str | None = None


class StyleRemove(_Struct):
    property: str


class StyleDeclarationData(_Struct, tag_field="source", tag=13):
    index: list[int]
    id: int | None = None
    styleId: int | None = None
    set: StyleSet | None = None
    remove: StyleRemove | None = None


class SelectionRange(_Struct):
    start: int
    startOffset: int
    end: int
    endOffset: int


class SelectionData(_Struct, tag_field="source", tag=14):
    ranges: list[SelectionRange]


class AdoptedStyleRules(_Struct):
    styleId: int
    rules: list[StyleRuleAdd]


class AdoptedStyleSheetData(_Struct, tag_field="source", tag=15):
    id: int
    styleIds: list[int]
    styles: list[AdoptedStyleRules] | None = None


class CustomElementDefine(_Struct):
    name: str


class CustomElementData(_Struct, tag_field="source", tag=16):
    define: CustomElementDefine | None = None


IncrementalData = (
    MutationData
    | MouseMoveData
    | MouseInteractionData
    | ScrollData
    | ViewportResizeData
    | InputData
    | TouchMoveData
    | MediaInteractionData
    | StyleSheetRuleData
    | CanvasMutationData
    | FontData
    | LogData
    | DragData
    | StyleDeclarationData
    | SelectionData
    | AdoptedStyleSheetData
    | CustomElementData
)

# Incremental sources that are a visitor's own doing: a recording starts with one.
ACTIVITY_SOURCES = (
    MouseMoveData,
    MouseInteractionData,
    TouchMoveData,
    InputData,
    ScrollData,
    DragData,
    SelectionData,
)


# ---------------------------------------------------------------- events


class Offset(msgspec.Struct, frozen=True):
    top: float = 0
    left: float = 0


class Empty(msgspec.Struct, frozen=True):
    pass


class DomContentLoadedEvent(_Struct, tag_field="type", tag=0):
    timestamp: float
    data: Empty = Empty()


class LoadEvent(_Struct, tag_field="type", tag=1):
    timestamp: float
    data: Empty = Empty()


class FullSnapshot(_Struct):
    node: SerializedNode
    initialOffset: Offset = Offset()


class FullSnapshotEvent(_Struct, tag_field="type", tag=2):
    timestamp: float
    data: FullSnapshot


class IncrementalSnapshotEvent(_Struct, tag_field="type", tag=3):
    timestamp: float
    data: IncrementalData


class Meta(_Struct):
    href: str
    width: float
    height: float


class MetaEvent(_Struct, tag_field="type", tag=4):
    timestamp: float
    data: Meta


class Custom(_Struct):
    tag: str
    payload: Any = None


class CustomEvent(_Struct, tag_field="type", tag=5):
    timestamp: float
    data: Custom


class PluginEvent(_Struct, tag_field="type", tag=6):
    timestamp: float


class AssetEvent(_Struct, tag_field="type", tag=7):
    timestamp: float


Event = (
    DomContentLoadedEvent
    | LoadEvent
    | FullSnapshotEvent
    | IncrementalSnapshotEvent
    | MetaEvent
    | CustomEvent
    | PluginEvent
    | AssetEvent
)


# ---------------------------------------------------------------- the batch

Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=70, pattern=r"^[A-Za-z0-9-]+$")]
Sequence = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
MAX_URL_LENGTH = 8192
PageUrl = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_URL_LENGTH)]
VisitorId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class Batch(_Struct, forbid_unknown_fields=True):
    session: Identifier
    page: Identifier
    seq: Sequence
    url: PageUrl
    events: list[Event]
    consent: bool | None = None
    visitor: VisitorId | None = None


class BatchError(ValueError):
    """The body is not a batch; `str()` names the field and the problem."""


# In JSON text: an escaped backslash (kept, so the parity of backslashes is
# right), a valid surrogate pair (kept), or a lone surrogate (replaced).
_ESCAPES = re.compile(
    rb"\\\\|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\u[dD][89a-fA-F][0-9a-fA-F]{2}"
)
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def _replace_lone(match: re.Match[bytes]) -> bytes:
    text = match.group(0)
    return text if len(text) != 6 else b"\\ufffd"


def replace_lone_surrogates(body: bytes) -> bytes:
    """Browsers' JSON.stringify emits lone surrogates for broken emoji in page
    text; msgspec refuses them. They become U+FFFD instead of failing the batch."""
    if not _MAYBE_SURROGATE.search(body):
        return body
    return _ESCAPES.sub(_replace_lone, body)


_decoder = msgspec.json.Decoder(Batch)


def decode_batch(body: bytes) -> Batch:
    try:
        return _decoder.decode(replace_lone_surrogates(body))
    except msgspec.ValidationError as exc:
        raise BatchError(_describe(str(exc))) from exc
    except msgspec.DecodeError as exc:
        raise BatchError(f"body: not valid JSON ({exc})") from exc


def _describe(message: str) -> str:
    # "Expected `int`, got `str` - at `$.events[0].timestamp`" -> "events[0].timestamp: ..."
    text, sep, where = message.rpartition(" - at `")
    unknown = re.match(r"Object contains unknown field `([^`]+)`", text if sep else message)
    if not sep:
        return f"{unknown.group(1)}: unknown field" if unknown else message.replace("`", "")
    key = where.rstrip("`").removeprefix("$").removeprefix(".") or "body"
    return f"{key}: {text.replace('`', '')}"
