"""Recording gateway: an edge node that proxies a site and records its visitors."""

__version__ = "0.1.0"
