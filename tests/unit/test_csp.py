import pytest

from gateway.edge.csp import CspPlan, plan_csp

SRC = "https://shop.example/__rec/"
UNCHANGED = CspPlan(allowed=True, nonce=None, headers=None, reason=None)
BLOCKED_SCRIPT = CspPlan(allowed=False, nonce=None, headers=None, reason="csp_script")
BLOCKED_CONNECT = CspPlan(allowed=False, nonce=None, headers=None, reason="csp_connect")


def plan(headers: list[str], metas: list[str] | None = None, **sources: str) -> CspPlan:
    sources = {"script_source": SRC, "connect_source": SRC, **sources}
    return plan_csp(headers, metas or [], **sources)


def rewritten(*headers: str, nonce: str | None = None) -> CspPlan:
    return CspPlan(allowed=True, nonce=nonce, headers=headers, reason=None)


def directives(value: str) -> list[list[tuple[str, list[str]]]]:
    """Parse a header value independently of the module: policies of (name, sources)."""
    return [
        [(t.split()[0].lower(), t.split()[1:]) for t in policy.split(";") if t.strip()]
        for policy in value.split(",")
    ]


def test_no_csp() -> None:
    assert plan([]) == UNCHANGED


def test_default_src_self_allows_both() -> None:
    assert plan(["default-src 'self'"]) == UNCHANGED


def test_nonce_is_used_instead_of_rewriting() -> None:
    assert plan(["script-src 'nonce-abc'"]) == CspPlan(True, "abc", None, None)


def test_strict_dynamic_with_nonce() -> None:
    assert plan(["script-src 'strict-dynamic' 'nonce-abc' https:"]) == CspPlan(
        True, "abc", None, None
    )


def test_strict_dynamic_without_nonce_ignores_self() -> None:
    assert plan(["script-src 'strict-dynamic' 'self'"]) == BLOCKED_SCRIPT


def test_host_list_gets_our_source() -> None:
    assert plan(["script-src https://cdn.example"]) == rewritten(
        f"script-src https://cdn.example {SRC}"
    )


def test_default_src_only_gets_specific_copies() -> None:
    assert plan(["default-src https://cdn.example 'unsafe-inline'; img-src *"]) == rewritten(
        "default-src https://cdn.example 'unsafe-inline'; img-src *"
        f"; script-src https://cdn.example 'unsafe-inline' {SRC}"
        f"; connect-src https://cdn.example 'unsafe-inline' {SRC}"
    )


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("default-src 'none'", f"default-src 'none'; script-src {SRC}; connect-src {SRC}"),
        ("script-src 'NONE'; connect-src 'self';", f"script-src {SRC}; connect-src 'self';"),
    ],
)
def test_none_is_replaced(header: str, expected: str) -> None:
    assert plan([header]) == rewritten(expected)


@pytest.mark.parametrize(
    ("connect", "expected"),
    [
        ("https://shop.example/v1/", None),
        ("https://collect.example/v1/", "connect-src 'self' https://collect.example/v1/"),
        ("http://shop.example/v1/", "connect-src 'self' http://shop.example/v1/"),
        ("https://shop.example:8443/v1/", "connect-src 'self' https://shop.example:8443/v1/"),
    ],
)
def test_self_for_connect_means_the_page_origin(connect: str, expected: str | None) -> None:
    result = plan(["default-src 'self'"], connect_source=connect)
    assert result == (
        UNCHANGED if expected is None else rewritten(f"default-src 'self'; {expected}")
    )


def test_schemeless_source_takes_the_page_scheme() -> None:
    assert (
        plan(["connect-src shop.example"], connect_source="https://shop.example/v1/") == UNCHANGED
    )
    result = plan(["connect-src shop.example"], connect_source="http://shop.example/v1/")
    assert result == rewritten("connect-src shop.example http://shop.example/v1/")


def test_strict_dynamic_does_not_affect_connect() -> None:
    header = "default-src 'strict-dynamic' 'nonce-abc' 'self'"
    assert plan([header]) == CspPlan(True, "abc", None, None)


@pytest.mark.parametrize("joined", [True, False], ids=["comma", "separate"])
@pytest.mark.parametrize(
    ("policies", "nonce", "changed"),
    [
        # Same nonce everywhere: nothing to rewrite.
        (["script-src 'strict-dynamic' 'nonce-a'", "script-src 'nonce-a'"], "a", None),
        # The strict policy dictates the nonce; the other one takes our host source.
        (
            ["script-src 'strict-dynamic' 'nonce-a'", "script-src 'nonce-b'"],
            "a",
            [None, f"script-src 'nonce-b' {SRC}"],
        ),
        # The nonce shared by the most policies wins, so nothing needs rewriting.
        (["script-src 'nonce-a' 'nonce-b'", "script-src 'nonce-b'"], "b", None),
    ],
)
def test_several_policies_share_one_nonce(
    joined: bool, policies: list[str], nonce: str, changed: list[str | None] | None
) -> None:
    headers = [", ".join(policies)] if joined else policies
    result = plan(headers)
    assert (result.allowed, result.nonce) == (True, nonce)
    if changed is None:
        assert result.headers is None
    else:
        new = [c or p for c, p in zip(changed, policies, strict=True)]
        assert result.headers == ((", ".join(new),) if joined else tuple(new))


@pytest.mark.parametrize("joined", [True, False], ids=["comma", "separate"])
def test_conflicting_required_nonces_block(joined: bool) -> None:
    policies = ["script-src 'strict-dynamic' 'nonce-a'", "script-src 'strict-dynamic' 'nonce-b'"]
    assert plan([", ".join(policies)] if joined else policies) == BLOCKED_SCRIPT


def test_meta_nonce_is_used() -> None:
    assert plan([], ["script-src 'nonce-m'"]) == CspPlan(True, "m", None, None)


def test_meta_nonce_wins_over_header_nonce() -> None:
    result = plan(["script-src 'nonce-h'"], ["script-src 'nonce-m'"])
    assert result == rewritten(f"script-src 'nonce-h' {SRC}", nonce="m")


def test_meta_without_nonce_blocks_script() -> None:
    assert plan([], ["script-src https://cdn.example"]) == BLOCKED_SCRIPT


def test_meta_connect_src_blocks_connect() -> None:
    assert plan([], ["script-src 'self'; connect-src https://api.example"]) == BLOCKED_CONNECT


def test_header_connect_src_is_extended() -> None:
    assert plan(["connect-src https://api.example"]) == rewritten(
        f"connect-src https://api.example {SRC}"
    )


@pytest.mark.parametrize(
    ("source", "allowed"),
    [
        ("https://shop.example", True),
        ("https://SHOP.Example", True),
        ("shop.example", True),
        ("http://shop.example", True),  # CSP upgrades http to https
        ("https://other.example", False),
        ("https://*.example", True),
        ("*.example", True),
        ("https://*.shop.example", False),
        ("https://*.example.org", False),
        ("https://shop.example:443", True),
        ("https://shop.example:8443", False),
        ("https://shop.example:*", True),
        ("https://shop.example:", False),
        ("https://shop.example/", True),
        ("https://shop.example/__rec/", True),
        ("https://shop.example/%5F_rec/", True),
        ("https://shop.example/__REC/", False),
        ("https://shop.example/__rec", False),  # no trailing slash: exact path only
        ("https://shop.example/other/", False),
        ("https:", True),
        ("http:", True),
        ("ftp:", False),
        ("data:", False),
        ("*", True),
        ("'self'", True),
        ("'unsafe-inline'", False),
    ],
)
def test_source_matching(source: str, allowed: bool) -> None:
    result = plan([f"default-src {source}"])
    assert result.allowed
    assert (result.headers is None) == allowed


@pytest.mark.parametrize(
    ("source", "allowed"),
    [
        ("https://shop.example:8443", True),
        ("https://shop.example", False),
        ("https://*.example:*", True),
        ("https://shop.example:443", False),
    ],
)
def test_port_matching_with_explicit_port(source: str, allowed: bool) -> None:
    ours = "https://shop.example:8443/__rec/"
    result = plan([f"default-src {source}"], script_source=ours, connect_source=ours)
    assert (result.headers is None) == allowed


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("script-src-elem 'self'; script-src 'none'", None),
        (
            "script-src-elem https://cdn.example; script-src 'self'",
            f"script-src-elem https://cdn.example {SRC}; script-src 'self'",
        ),
    ],
)
def test_script_src_elem_takes_precedence(header: str, expected: str | None) -> None:
    assert plan([header]) == (UNCHANGED if expected is None else rewritten(expected))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Default-Src 'none'; SCRIPT-SRC 'SELF'; Connect-Src 'Self'", None),
        (
            "SCRIPT-SRC https://cdn.example; Default-Src 'self'",
            f"SCRIPT-SRC https://cdn.example {SRC}; Default-Src 'self'",
        ),
        # Duplicates: only the first counts, and only the first is rewritten.
        ("script-src 'self'; script-src 'none'", None),
        (
            "script-src https://cdn.example; Script-Src 'self'",
            f"script-src https://cdn.example {SRC}; Script-Src 'self'",
        ),
    ],
)
def test_directive_names_are_case_insensitive(header: str, expected: str | None) -> None:
    assert plan([header]) == (UNCHANGED if expected is None else rewritten(expected))


def test_uppercase_nonce_keyword() -> None:
    assert plan(["script-src 'NONCE-abc'"]) == CspPlan(True, "abc", None, None)


@pytest.mark.parametrize(
    "hostile", ["'nonce-a\" onload=\"x'", "'nonce-a\"b'", "'nonce-ab<'", "'nonce-'", "'nonce-a=b'"]
)
def test_hostile_nonce_is_never_used(hostile: str) -> None:
    header = f"script-src {hostile}"
    assert plan([header]) == rewritten(f"{header} {SRC}")
    assert plan([], [header]) == BLOCKED_SCRIPT


def test_sandbox_without_allow_scripts_blocks() -> None:
    assert plan(["sandbox allow-forms"]) == BLOCKED_SCRIPT
    assert plan(["sandbox allow-scripts"]) == UNCHANGED
    assert plan([], ["sandbox"]) == UNCHANGED  # ignored in <meta>


def test_rewrite_preserves_everything_else() -> None:
    headers = [
        "default-src 'self' https://cdn.example; img-src * data:; report-uri /csp,"
        " frame-ancestors 'none',  ",
        "upgrade-insecure-requests",
        "style-src 'unsafe-inline'; connect-src https://api.example; script-src https://x.example",
    ]
    result = plan(headers)
    assert result.allowed and result.nonce is None and result.headers is not None
    assert len(result.headers) == len(headers)
    assert result.headers[1] == headers[1]
    ours = {"script-src", "connect-src"}
    for before, after in zip(headers, result.headers, strict=True):
        old, new = directives(before), directives(after)
        assert len(old) == len(new)
        for old_policy, new_policy in zip(old, new, strict=True):
            assert [d for d in new_policy if d[0] not in ours] == [
                d for d in old_policy if d[0] not in ours
            ]
            for name, sources in new_policy:
                if name in ours:
                    assert sources[-1] == SRC
    assert directives(result.headers[2])[0] == [
        ("style-src", ["'unsafe-inline'"]),
        ("connect-src", ["https://api.example", SRC]),
        ("script-src", ["https://x.example", SRC]),
    ]
