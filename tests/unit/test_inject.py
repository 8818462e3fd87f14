"""Tests for the streaming HTML head scanner that places the recorder tag."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.edge.inject import HeadDecisions, HtmlInjector, _Lexer

TAG = b'<script src="/__rec/recorder.js" data-t="1"></script>'
MARKER = b"/__rec/recorder.js"
CONFLICTS = (b"fullstory.com", b"hotjar")


class Recorder:
    """A `decide` callback that injects TAG and remembers what it was given."""

    def __init__(self, result: bytes | str = TAG) -> None:
        self.result = result
        self.calls: list[list[str]] = []

    def __call__(self, csp: list[str]) -> bytes | str:
        self.calls.append(list(csp))
        return self.result


def make(decide: Recorder | None = None, limit: int = 65536) -> HtmlInjector:
    return HtmlInjector(decide or Recorder(), own_marker=MARKER, conflicts=CONFLICTS, limit=limit)


def run(
    doc: bytes,
    chunks: Iterable[bytes] | None = None,
    *,
    decide: Recorder | None = None,
    limit: int = 65536,
) -> tuple[str | None, bytes]:
    injector = make(decide, limit)
    out = b"".join(injector.feed(chunk) for chunk in (chunks or [doc])) + injector.finish()
    assert injector.decided
    return injector.outcome, out


def split(doc: bytes, cuts: Iterable[int]) -> list[bytes]:
    bounds = [0, *sorted(set(cuts)), len(doc)]
    return [doc[a:b] for a, b in pairwise(bounds)]


def injected_at(doc: bytes, point: int) -> tuple[str, bytes]:
    return "injected", doc[:point] + TAG + doc[point:]


def after(doc: bytes, needle: bytes) -> int:
    return doc.index(needle) + len(needle)


# -- placement ---------------------------------------------------------------


def test_plain_page_gets_tag_right_after_head() -> None:
    doc = b"<!DOCTYPE html>\n<html lang=en><head><title>t</title></head><body>hi</body></html>"
    assert run(doc) == injected_at(doc, after(doc, b"<head>"))


def test_tag_goes_after_leading_meta_charset() -> None:
    doc = b'<html><head>\n  <meta charset="utf-8">\n  <title>t</title></head>'
    assert run(doc) == injected_at(doc, after(doc, b'"utf-8">'))


@pytest.mark.parametrize("equiv", [b"X-UA-Compatible", b"content-type"])
def test_tag_goes_after_leading_http_equiv_meta(equiv: bytes) -> None:
    doc = b'<head><meta name="viewport"><!-- c --><meta http-equiv="%s" content="x"><link>' % equiv
    assert run(doc) == injected_at(doc, after(doc, b'content="x">'))


def test_charset_meta_later_in_head_still_moves_point_within_prescan() -> None:
    # The browser finds the charset only in the first 1024 bytes: keep it there.
    doc = b"<head><title>" + b"x" * 600 + b"</title><meta charset=utf-8></head>"
    assert run(doc) == injected_at(doc, after(doc, b"utf-8>"))


def test_charset_meta_past_prescan_does_not_move_point() -> None:
    doc = b"<head><title>" + b"x" * 1100 + b"</title><meta charset=utf-8></head>"
    assert run(doc) == injected_at(doc, after(doc, b"<head>"))


def test_uppercase_markup() -> None:
    doc = b"<HTML><HEAD class=x><META CHARSET=UTF-8><TITLE>T</TITLE></HEAD>"
    assert run(doc) == injected_at(doc, after(doc, b"UTF-8>"))


def test_head_in_comment_is_ignored() -> None:
    doc = b"<!-- <head> --><html><!-- <body> --><head></head>"
    assert run(doc) == injected_at(doc, doc.rindex(b"<head>") + 6)


def test_markers_in_script_text_are_ignored() -> None:
    # A script before <head> opens an implied head, so the tag goes before it.
    doc = b'<html><script>var s = "<head>";</script><head>'
    assert run(doc) == injected_at(doc, doc.index(b"<script>"))


def test_body_in_head_script_does_not_end_head() -> None:
    csp = b'<meta http-equiv="Content-Security-Policy" content="x">'
    doc = b'<head><script>document.write("<body>")</script>' + csp + b"</head>"
    decide = Recorder()
    assert run(doc, decide=decide) == injected_at(doc, after(doc, b"<head>"))
    assert decide.calls == [["x"]]


def test_head_in_attribute_value_is_ignored() -> None:
    doc = b'<html><div title="<head>">x</div><head>'
    assert run(doc) == injected_at(doc, doc.index(b"<div"))
    doc = b"<html><head><link title='<body>'><meta http-equiv=content-security-policy content=y>"
    decide = Recorder()
    assert run(doc, decide=decide)[0] == "injected"
    assert decide.calls == [["y"]]


def test_no_head_goes_after_body() -> None:
    doc = b'<!doctype html><html><body class="a>b"><p>x</p>'
    assert run(doc) == injected_at(doc, after(doc, b'"a>b">'))


@pytest.mark.parametrize(
    ("doc", "before"),
    [(b"<html>\n<div>x</div>", b"<div>"), (b"<!doctype html>\n  hello <b>", b"hello")],
)
def test_no_head_no_body_goes_before_first_content(doc: bytes, before: bytes) -> None:
    assert run(doc) == injected_at(doc, doc.index(before))


@pytest.mark.parametrize("html", [b"<html amp lang=en>", b"<HTML AMP>", "<html ⚡>".encode()])
def test_amp_pages_are_skipped(html: bytes) -> None:
    doc = b"<!doctype html>" + html + b"<head><title>t</title></head>"
    assert run(doc) == ("amp", doc)


@pytest.mark.parametrize("bom", [b"\xff\xfe", b"\xfe\xff"])
def test_utf16_is_skipped(bom: bytes) -> None:
    doc = bom + "<html><head></head>".encode("utf-16-le")
    assert run(doc) == ("utf16", doc)
    assert run(doc, [doc[:1], doc[1:]]) == ("utf16", doc)


def test_utf8_bom_is_fine() -> None:
    doc = b"\xef\xbb\xbf<html><head></head>"
    assert run(doc, [doc[:2], doc[2:]]) == injected_at(doc, after(doc, b"<head>"))


@pytest.mark.parametrize(
    "script",
    [b'<script src="https://edge.FullStory.com/s/fs.js"></script>', b"<script>hotjar(1)</script>"],
)
def test_conflicting_recorder_is_skipped(script: bytes) -> None:
    doc = b"<html><head><title>t</title>" + script + b"</head>"
    assert run(doc) == ("conflict", doc)


def test_conflict_outside_scripts_does_not_count() -> None:
    doc = b"<head><title>hotjar</title><link href=hotjar.css></head>"
    assert run(doc)[0] == "injected"


@pytest.mark.parametrize(
    "where", [b"<head>" + TAG, b"<head><script>load('" + MARKER + b"')</script>"]
)
def test_already_injected_is_skipped(where: bytes) -> None:
    doc = b"<html>" + where + b"</head><body>"
    assert run(doc) == ("already", doc)


def test_meta_csp_is_collected_and_passed_to_decide() -> None:
    doc = (
        b"<head><meta charset=utf-8>"
        b"<meta http-equiv='content-security-policy' content=\"script-src 'self'\">"
        b'<meta http-equiv="Content-Security-Policy-Report-Only" content="ignored">'
        b'<meta HTTP-EQUIV="Content-Security-Policy" content="a &amp; &quot;b&#39; &lt;&gt;">'
        b"<title>t</title></head>"
    )
    decide = Recorder()
    assert run(doc, decide=decide) == injected_at(doc, after(doc, b"charset=utf-8>"))
    assert decide.calls == [["script-src 'self'", "a & \"b' <>"]]


def test_decide_can_refuse() -> None:
    doc = b"<head></head>"
    decide = Recorder("csp_blocked")
    assert run(doc, decide=decide) == ("csp_blocked", doc)
    assert decide.calls == [[]]


def test_head_longer_than_limit_still_injects() -> None:
    doc = b"<head><title>t</title><!--" + b"x" * 5000 + b"--></head>"
    injector = make(limit=1024)
    assert injector.feed(doc[:1000]) == b""
    assert injector.feed(doc[1000:2000]) == injected_at(doc[:2000], 6)[1]
    assert injector.feed(doc[2000:]) == doc[2000:]
    assert injector.finish() == b""


def test_no_marker_within_limit() -> None:
    doc = b"<!--" + b"x" * 5000 + b"--><head></head>"
    assert run(doc, limit=1024) == ("no_marker", doc)
    assert run(doc, [doc[:1023], doc[1023:1024], doc[1024:]], limit=1024) == ("no_marker", doc)


def test_truncated_tag_at_eof_is_not_a_marker() -> None:
    assert run(b"<html><he") == ("no_marker", b"<html><he")
    doc = b'<head><script src="' + MARKER
    assert run(doc) == injected_at(doc, 6)


def test_empty_document() -> None:
    assert run(b"") == ("no_marker", b"")


def test_one_byte_chunks() -> None:
    doc = b"<!doctype html><html><head><meta charset=utf-8><title>t</title></head><body>"
    injector = make()
    outs = [injector.feed(doc[i : i + 1]) for i in range(len(doc))]
    decided_at = doc.index(b"<title>") + len(b"<title>t</title></head>") - 1
    assert outs[:decided_at] == [b""] * decided_at
    assert outs[decided_at] == injected_at(doc[: decided_at + 1], after(doc, b"utf-8>"))[1]
    assert b"".join(outs) + injector.finish() == injected_at(doc, after(doc, b"utf-8>"))[1]


def test_marker_split_across_chunks() -> None:
    injector = make()
    assert injector.feed(b"<html><he") == b""
    assert not injector.decided
    assert injector.feed(b"ad><b") == b""
    assert injector.feed(b"ody>") == b"<html><head>" + TAG + b"<body>"
    assert injector.outcome == "injected"
    rest = b"<p>after</p>"
    assert injector.feed(rest) is rest


PAGES_TEXT = [
    ("日本語のページ", "shift_jis"),
    ("ｱｲｳ", "shift_jis"),
    ("café, naïve", "latin-1"),
    ("日本", "utf-8"),
]


@pytest.mark.parametrize(("text", "encoding"), PAGES_TEXT)
def test_non_ascii_bytes_are_preserved(text: str, encoding: str) -> None:
    word = text.encode(encoding)
    doc = b"<html><!-- " + word + b" --><head><title>" + word + b"</title></head><p>" + word
    assert run(doc, [bytes([b]) for b in doc]) == injected_at(doc, after(doc, b"<head>"))


def test_64k_in_one_byte_chunks() -> None:
    head = b"<head><title>" + b"t" * 16000 + b"</title><!--" + b"c" * 16000 + b"-->"
    head += b"<script>" + b"s" * 16000 + b'</script><link title="' + b"a" * 16000 + b'">'
    doc = head + b"<meta content=x>" * (65536 - len(head))
    injector = make()
    out = b"".join(injector.feed(doc[i : i + 1]) for i in range(len(doc)))
    assert injector.outcome == "injected"
    assert out + injector.finish() == injected_at(doc, 6)[1]


def test_rejects_empty_patterns() -> None:
    with pytest.raises(ValueError):
        HtmlInjector(Recorder(), own_marker=b"", conflicts=[])
    with pytest.raises(ValueError):
        HtmlInjector(Recorder(), own_marker=MARKER, conflicts=[b""])


# -- properties --------------------------------------------------------------

DECOYS = [
    b"<head>",
    b"<HEAD class=x>",
    b"</head>",
    b"<body>",
    b"<meta charset=utf-8>",
    b"<script src=x.js>",
    b"<!--",
    b"-->",
    b"<title>",
]
decoys = st.sampled_from(DECOYS)
spaces = st.sampled_from([b"", b" ", b"\n", b"\r\n\t "])
words = st.one_of(
    st.text(st.characters(exclude_characters="<\ufeff", codec="utf-8"), min_size=1, max_size=8)
    .map(str.strip)
    .filter(bool)
    .map(str.encode),
    st.sampled_from(["日本語", "ｶﾀｶﾅ"]).map(lambda s: s.encode("shift_jis")),
    st.sampled_from(["café", "Grüße"]).map(lambda s: s.encode("latin-1")),
)


def comment(decoy: bytes) -> bytes:
    return b"<!-- " + decoy.replace(b"-->", b"") + b" -->"


comments = decoys.map(comment)
PRESCAN = 1024
scripts = st.builds(
    lambda d, w: b'<script>var s = "' + d + b'"; // ' + w + b"</script>", decoys, words
)
titles = st.builds(lambda d: b"<title>" + d + b"</title>", decoys)
links = st.builds(
    lambda d, q: b"<link rel=x title=" + q + d + q + b">", decoys, st.sampled_from([b'"', b"'"])
)
# (meta, whether it must stay before the tag)
metas = st.sampled_from(
    [
        (b'<meta charset="utf-8">', True),
        (b"<META CHARSET=shift_jis>", True),
        (b'<meta http-equiv="X-UA-Compatible" content="IE=edge">', True),
        (b"<meta http-equiv=Content-Type content='text/html'>", True),
        (b'<meta name="viewport" content="width=device-width">', False),
        (b'<meta http-equiv="Content-Security-Policy" content="default-src *">', False),
    ]
)
fillers = st.one_of(spaces, comments)
# (item, whether it is a meta that must stay before the tag)
head_items = st.one_of(
    st.one_of(titles, scripts, links, fillers).map(lambda item: (item, False)), metas
)
body_items = st.one_of(
    words,
    st.builds(lambda d, w: b'<div title="' + d + b'">' + w + b"</div>", decoys, words),
    comments,
    spaces,
)


@st.composite
def documents(draw: st.DrawFn) -> tuple[bytes, int, int]:
    """A document without the own marker, where its tag must go, and a place
    where the scanner must see any script inserted there."""
    doc = b"".join(draw(st.lists(st.one_of(fillers, st.just(b"<!DOCTYPE html>")), max_size=3)))
    if draw(st.booleans()):
        doc += b'<html lang="en" data-x="' + draw(decoys) + b'">' + draw(spaces)
    if draw(st.booleans()):  # explicit head
        doc += draw(st.sampled_from([b"<head>", b"<HEAD>", b'<head id="<body>">']))
        point = spot = len(doc)
        for meta, early in draw(st.lists(metas, max_size=3)):
            doc += draw(fillers) + meta
            point = len(doc) if early and len(doc) <= PRESCAN else point
        if draw(st.booleans()):  # the head goes on past its leading metas
            doc += draw(st.one_of(titles, scripts, links))
            # A charset-like meta later in the head still moves the point while it
            # ends within the browser's 1024-byte prescan.
            for item, early in draw(st.lists(head_items, max_size=5)):
                doc += item
                point = len(doc) if early and len(doc) <= PRESCAN else point
            doc += draw(st.sampled_from([b"", b"</head>", b"</HEAD><body>"]))
    else:
        body = draw(st.sampled_from([b"", b"<body>", b'<BODY class="<head>">']))
        gap = draw(spaces)
        # After the body tag, else right before the first content.
        spot = len(doc)
        point = len(doc) + len(body) + (0 if body else len(gap))
        doc += body + gap
        doc += draw(st.one_of(words, st.builds(lambda d: b'<p title="' + d + b'">', decoys)))
    doc += b"".join(draw(st.lists(body_items, max_size=4)))
    return doc, point, spot


@settings(max_examples=300)
@given(documents(), st.data())
def test_output_does_not_depend_on_chunking(
    case: tuple[bytes, int, int], data: st.DataObject
) -> None:
    doc, _, _ = case
    limit = data.draw(st.sampled_from([65536, 64, 17, 1]))
    cuts = data.draw(st.lists(st.integers(0, len(doc)), max_size=20))
    outcome, out = run(doc, split(doc, cuts), limit=limit)
    assert (outcome, out) == run(doc, limit=limit)
    if outcome == "injected":
        assert out.count(TAG) == 1
        assert out.replace(TAG, b"", 1) == doc
    else:
        assert out == doc


@settings(max_examples=300)
@given(documents(), st.lists(st.integers(0, 10_000), max_size=20))
def test_tag_lands_at_the_expected_place(case: tuple[bytes, int, int], cuts: list[int]) -> None:
    doc, point, _ = case
    outcome, out = run(doc, split(doc, [c % (len(doc) + 1) for c in cuts]))
    assert outcome == "injected"
    assert out.count(TAG) == 1
    assert out.replace(TAG, b"", 1) == doc
    assert out == doc[:point] + TAG + doc[point:]


@settings(max_examples=100)
@given(documents(), st.data())
def test_skipped_pages_pass_through_unchanged(
    case: tuple[bytes, int, int], data: st.DataObject
) -> None:
    doc, _, spot = case
    # Our own tag, or a conflicting script, where the scanner must see it.
    extra = data.draw(
        st.sampled_from([(TAG, "already"), (b"<script>hotjar()</script>", "conflict")])
    )
    marked = doc[:spot] + extra[0] + doc[spot:]
    cuts = data.draw(st.lists(st.integers(0, len(marked)), max_size=10))
    assert run(marked, split(marked, cuts)) == (extra[1], marked)


@pytest.mark.parametrize(
    ("doc", "after_marker"),
    [
        (b'<?xml version="1.0"?><html xmlns="x"><head><meta charset="UTF-8"/></head>', b"/>"),
        (b'<?xml version="1.0"?><html xmlns="x"><body class="a">', b'class="a">'),
    ],
)
def test_xml_mode_injects_inside_head_or_body(doc: bytes, after_marker: bytes) -> None:
    injector = HtmlInjector(lambda _csp: TAG, own_marker=MARKER, conflicts=[], xml=True)
    out = injector.feed(doc) + injector.finish()
    assert injector.outcome == "injected"
    point = doc.index(after_marker) + len(after_marker)
    assert out == doc[:point] + TAG + doc[point:]


@pytest.mark.parametrize(
    "doc",
    [
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>',
        b'<?xml version="1.0"?><html xmlns="x"><meta charset="UTF-8"/><p>x</p></html>',
        b"<?xml version='1.0'?>text",
    ],
)
def test_xml_mode_never_injects_outside_head_or_body(doc: bytes) -> None:
    injector = HtmlInjector(lambda _csp: TAG, own_marker=MARKER, conflicts=[], xml=True)
    out = injector.feed(doc) + injector.finish()
    assert injector.outcome == "no_marker"
    assert out == doc


_TAG_SOUP = st.lists(st.sampled_from(list(b" \t\n/=\"'>ab-")), max_size=40).map(bytes)


@given(st.sampled_from([b"meta", b"html", b"link", b"/head", b"b"]), _TAG_SOUP, _TAG_SOUP)
@settings(max_examples=3000)
def test_fast_tag_reading_agrees_with_the_tokenizer(name: bytes, soup: bytes, rest: bytes) -> None:
    """The one-regex reading of a whole tag gives what the step-by-step reading gives."""
    lexer = _Lexer()
    lexer.append(b"<" + name + soup + rest)
    lexer.reveal(1 << 16)
    steps = lexer._tag(0)
    try:
        while True:
            assert next(steps) is None
            slow = None  # the tokenizer needs bytes past the buffer: the tag is not whole
            break
    except StopIteration as done:
        slow = done.value
    fast = lexer._complete_tag(0)
    if fast is None:
        return  # left to the tokenizer, which is always right
    assert slow is not None, "the fast path read a tag the tokenizer finds incomplete"
    assert (fast.kind, fast.start, fast.end, fast.name) == (
        slow.kind,
        slow.start,
        slow.end,
        slow.name,
    )
    if fast.name in (b"meta", b"html"):
        assert dict(fast.attrs) == dict(slow.attrs)


# -- decisions remembered across pages ------------------------------------------


def run_with(
    decisions: HeadDecisions,
    doc: bytes,
    chunks: Iterable[bytes] | None = None,
    *,
    decide: Recorder | None = None,
    xml: bool = False,
) -> tuple[str | None, bytes]:
    injector = HtmlInjector(
        decide or Recorder(),
        own_marker=MARKER,
        conflicts=CONFLICTS,
        xml=xml,
        decisions=decisions,
    )
    out = b"".join(injector.feed(chunk) for chunk in (chunks or [doc])) + injector.finish()
    return injector.outcome, out


def test_a_repeated_head_is_decided_from_memory() -> None:
    decisions = HeadDecisions()
    first = b'<!doctype html><head><meta charset="utf-8"><title>a</title></head><body>one'
    again = first.replace(b"one", b"two <script src=x></script>")
    assert run_with(decisions, first) == injected_at(first, after(first, b'"utf-8">'))
    assert decisions.hits == 0
    assert run_with(decisions, again) == injected_at(again, after(again, b'"utf-8">'))
    assert decisions.hits == 1


def test_remembered_decision_still_asks_decide_with_the_meta_policies() -> None:
    decisions = HeadDecisions()
    page = b'<head><meta http-equiv="Content-Security-Policy" content="script-src a"></head><p>'
    run_with(decisions, page)
    refusing = Recorder("csp_blocked")
    assert run_with(decisions, page, decide=refusing) == ("csp_blocked", page)
    assert refusing.calls == [["script-src a"]]
    assert decisions.hits == 1


def test_decisions_are_kept_apart_by_settings() -> None:
    decisions = HeadDecisions()
    page = b"<title>x</title><p>text"
    assert run_with(decisions, page)[0] == "injected"
    # XHTML mode refuses a page without head or body: the HTML decision must not be reused.
    assert run_with(decisions, page, xml=True) == ("no_marker", page)
    assert decisions.hits == 0


@settings(max_examples=300)
@given(documents(), documents(), st.data())
def test_remembered_decisions_change_nothing(
    first: tuple[bytes, int, int], second: tuple[bytes, int, int], data: st.DataObject
) -> None:
    """Whatever was seen before, a page comes out as it would from a fresh scan:
    the same page again, another one, and pages sharing any prefix with them."""
    decisions = HeadDecisions(size=4)
    doc_a, doc_b = first[0], second[0]
    cut = data.draw(st.integers(0, len(doc_a)))
    tail = data.draw(st.sampled_from([b"", b"<p>x", b"</head><body>", b"<script>hotjar</script>"]))
    pages = [doc_a, doc_b, doc_a, doc_a[:cut] + tail, doc_a[:cut] + doc_b, doc_b]
    for page in pages:
        cuts = data.draw(st.lists(st.integers(0, len(page)), max_size=8))
        assert run_with(decisions, page, split(page, cuts)) == run(page)


def test_remembered_heads_are_bounded_in_bytes() -> None:
    decisions = HeadDecisions(size=8, max_bytes=1000)
    heads = [b"<head><title>" + bytes([97 + n]) * 300 + b"</title></head><p>" for n in range(4)]
    for head in heads:
        run_with(decisions, head)
    # Three 330-byte heads fit in 1,000 bytes: the oldest went; a longer one is never kept.
    run_with(decisions, heads[0])
    assert decisions.hits == 0
    run_with(decisions, heads[3])
    assert decisions.hits == 1
    huge = b"<head><title>" + b"z" * 2000 + b"</title></head><p>"
    run_with(decisions, huge)
    run_with(decisions, huge)
    assert decisions.hits == 1
