"""Which clients share a rate limit: an IPv4 address each, an IPv6 /64 each."""

from __future__ import annotations

from gateway.collect.handler import _rate_key


def test_ipv4_addresses_are_their_own_key() -> None:
    assert _rate_key("203.0.113.7") == "203.0.113.7"
    assert _rate_key("203.0.113.8") != _rate_key("203.0.113.7")


def test_ipv6_clients_share_their_slash_64() -> None:
    one = _rate_key("2001:db8:1:2:aaaa::1")
    assert one == "2001:db8:1:2::/64"
    assert _rate_key("2001:db8:1:2:ffff:ffff:ffff:ffff") == one
    assert _rate_key("2001:db8:1:3::1") != one
    assert _rate_key("2001:db8:1:2:aaaa::1") == one  # asked again: remembered, same answer


def test_what_is_not_an_address_is_kept_as_it_is() -> None:
    assert _rate_key("unix-socket") == "unix-socket"
    assert _rate_key("") == ""
