"""What can go wrong talking to an origin, each kind its own class.

The proxy maps each to a status and a metric kind; the names say which.
"""

from __future__ import annotations


class OriginError(Exception):
    """Any failure of an exchange with an origin."""


class OriginConnectError(OriginError):
    """No connection could be made (refused, unreachable, name unknown, TLS refused)."""


class OriginTimeout(OriginError, TimeoutError):
    """Connecting, or waiting for the next bytes of an answer, took too long."""


class OriginClosed(OriginError):
    """The origin closed the connection before its response headers were complete."""


class OriginProtocolError(OriginError):
    """The origin's answer is not valid HTTP/1.1 (before or in its body)."""


class OriginBodyError(OriginError):
    """The response body was cut short: fewer bytes than announced, or a broken chunk."""
