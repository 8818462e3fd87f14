"""Configuration: TOML decoded into msgspec Structs, then checked as a whole.

Every problem is reported as a ConfigError whose message starts with the key
path (``sites[0].origin``) so an operator knows exactly what to fix.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import msgspec

from gateway.edge.routing import host_key

DEFAULT_CONFIG_PATH = Path("config/gateway.toml")
PLAN_LIMITS = {"standard": 10_000, "pro": 50_000}
_SITE_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_HOST_NAME = re.compile(
    r"^(\*\.)?([a-z0-9]([a-z0-9-]*[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$"
)


class ConfigError(Exception):
    """A configuration value that cannot be used; the message names its key."""


class _Table(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class ServerConfig(_Table):
    listen: str = "127.0.0.1:8080"
    admin_listen: str = "127.0.0.1:9090"
    admin_token: str = ""
    data_dir: str = "./data"
    # Shown in Via and used to detect requests that loop back to this node.
    node_name: str = ""
    # Peers whose X-Forwarded-* / Forwarded headers are believed (a load balancer).
    trusted_proxies: list[str] = []
    # Optional HTTPS listener; X-Forwarded-Proto follows the listener.
    tls_listen: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    prefix: str = "/__rec/"
    max_request_line_bytes: int = 8192
    max_header_bytes: int = 32768
    max_body_bytes: int = 100 * 1024 * 1024
    shutdown_grace: float = 10.0


class ProxyConfig(_Table):
    connect_timeout: float = 5.0
    # Longest wait for the origin's response headers.
    response_timeout: float = 60.0
    # Longest silence while a body is streaming (either way).
    idle_timeout: float = 120.0
    # Keep-alive pool: connections per origin and idle lifetime.
    max_connections_per_origin: int = 256
    keepalive_timeout: float = 30.0
    # Where injection gives up looking for <head>.
    inject_scan_limit: int = 65536


class CollectConfig(_Table):
    # A batch as sent (possibly gzip) and once decoded: 413 beyond either.
    max_body_bytes: int = 1024 * 1024
    max_decoded_bytes: int = 8 * 1024 * 1024
    # Token buckets: batches a second and the burst allowed, per client IP and per session.
    ip_rate: float = 20.0
    ip_burst: int = 60
    session_rate: float = 5.0
    session_burst: int = 30
    # New recordings one client address (an IPv6 /64) may open: per hour and burst.
    new_sessions_per_hour: float = 120.0
    new_sessions_burst: int = 60


class SpoolConfig(_Table):
    # Unconfirmed batches kept on disk (under data_dir/spool); beyond: 503 + Retry-After.
    max_bytes: int = 1024 * 1024 * 1024
    segment_bytes: int = 16 * 1024 * 1024
    # "always": fsync each batch; "grouped": one fsync for the batches of group_ms;
    # "never": leave it to the OS (a power cut may lose acknowledged batches).
    fsync: Literal["always", "grouped", "never"] = "grouped"
    group_ms: float = 5.0


class UpstreamConfig(_Table):
    url: str = "local"
    # Bearer token sent to a remote store's ingest endpoint (its store.ingest_token).
    token: str = ""
    # PEM CA bundle to verify an https store with; "" = the system's CAs.
    ca_file: str = ""
    # Upstream batches: up to batch_bytes of records, or what batch_wait seconds gathered.
    batch_bytes: int = 1024 * 1024
    batch_wait: float = 1.0
    # One export attempt may take this long before it counts as failed.
    timeout: float = 30.0
    max_connections: int = 4
    # Retries: exponential backoff with jitter between these bounds (seconds).
    retry_initial: float = 0.5
    retry_max: float = 30.0
    # Consecutive failures that open the circuit, and seconds it stays open before a trial.
    circuit_failures: int = 5
    circuit_cooldown: float = 30.0


class StoreConfig(_Table):
    finalize_after: float = 180.0
    retention_days: int = 10
    # A visitor's session starts a new recording after this many seconds without events.
    session_gap: float = 1800.0
    # Where recordings live; "" = data_dir/store.
    dir: str = ""
    # Bearer token required on POST /ingest/v1/batches when set (gateway store nodes).
    ingest_token: str = ""
    # Largest upstream batch accepted, as sent and once decompressed (413 beyond).
    max_batch_bytes: int = 64 * 1024 * 1024
    # Seconds between two passes of the finalizer and the retention sweeper.
    sweep_interval: float = 5.0
    # Days a share link works by default (never past the recording's deletion).
    share_days: float = 7.0


class ConsentCookie(_Table):
    name: str = ""
    values: list[str] = []


class BlockRules(_Table):
    ips: list[str] = []
    user_agents: list[str] = []
    visitors: list[str] = []


DEFAULT_CONFLICTS = [
    "smartlook",
    "hotjar",
    "clarity.ms",
    "fullstory",
    "mouseflow",
    "logrocket",
    "luckyorange",
    "inspectlet",
    "rrweb",
]


class RecordingConfig(_Table):
    enabled: bool = True
    record_mobile: bool = True
    mask_inputs: bool = True
    mask_numbers: bool = True
    mask_emails: bool = True
    exclude: list[str] = []
    consent: Literal["none", "opt-in", "opt-out"] = "none"
    consent_cookie: ConsentCookie = msgspec.field(default_factory=ConsentCookie)
    respect_gpc: bool = True
    block: BlockRules = msgspec.field(default_factory=BlockRules)
    conflicting_scripts: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_CONFLICTS))
    sample_rate: float = 1.0


class SiteConfig(_Table):
    key: str
    hosts: list[str]
    origin: str
    plan: Literal["standard", "pro"] = "standard"
    monthly_limit: int | None = None
    # True: the origin sees the visitor's Host; False: the origin's own host.
    preserve_host: bool = True
    # Rewrite a Location that points at the origin's own address to the public host.
    rewrite_location: bool = True
    # PEM bundle to verify an https origin with (default: the system's CAs).
    origin_ca: str = ""
    recording: RecordingConfig = msgspec.field(default_factory=RecordingConfig)

    @property
    def limit(self) -> int:
        return self.monthly_limit if self.monthly_limit is not None else PLAN_LIMITS[self.plan]


class Config(_Table):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    proxy: ProxyConfig = msgspec.field(default_factory=ProxyConfig)
    collect: CollectConfig = msgspec.field(default_factory=CollectConfig)
    spool: SpoolConfig = msgspec.field(default_factory=SpoolConfig)
    upstream: UpstreamConfig = msgspec.field(default_factory=UpstreamConfig)
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    sites: list[SiteConfig] = []


# Environment variables that override a key (secrets and ports stay out of files).
ENV_OVERRIDES = {
    "GATEWAY_ADMIN_TOKEN": ("server", "admin_token"),
    "GATEWAY_LISTEN": ("server", "listen"),
    "GATEWAY_ADMIN_LISTEN": ("server", "admin_listen"),
    "GATEWAY_TLS_LISTEN": ("server", "tls_listen"),
    "GATEWAY_DATA_DIR": ("server", "data_dir"),
    "GATEWAY_UPSTREAM_URL": ("upstream", "url"),
    "GATEWAY_UPSTREAM_TOKEN": ("upstream", "token"),
    "GATEWAY_INGEST_TOKEN": ("store", "ingest_token"),
}


def config_path(cli_value: str | None) -> Path:
    if cli_value:
        return Path(cli_value)
    return Path(os.environ.get("GATEWAY_CONFIG") or DEFAULT_CONFIG_PATH)


def load_config(path: Path, env: dict[str, str] | None = None) -> Config:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    return parse_config(text, env, source=str(path))


def parse_config(text: str, env: dict[str, str] | None = None, source: str = "config") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from exc
    for var, (table, key) in ENV_OVERRIDES.items():
        value = (os.environ if env is None else env).get(var)
        if value:
            section = data.setdefault(table, {})
            # A table given as a non-table value is left for msgspec to refuse by its key.
            if isinstance(section, dict):
                section[key] = value
    try:
        config = msgspec.convert(data, Config, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(_describe_validation_error(str(exc))) from exc
    validate(config)
    return config


def _describe_validation_error(message: str) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.sites[0].plan`"; lead with the key.
    # At the top level there is no " - at `$...`" part.
    text, sep, where = message.rpartition(" - at `")
    if not sep:
        text, where = message, ""
    key = where.rstrip("`").removeprefix("$").removeprefix(".")
    named = re.match(r"Object (contains unknown|missing required) field `([^`]+)`", text)
    if named:
        full = f"{key}.{named.group(2)}" if key else named.group(2)
        problem = "unknown key" if named.group(1) == "contains unknown" else "missing required key"
        return f"{full}: {problem}"
    return f"{key or 'config'}: {text.replace('`', '')}"


def parse_listen(value: str, key: str) -> tuple[str, int]:
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"{key}: expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port_text)


def validate(config: Config) -> None:
    server = config.server
    parse_listen(server.listen, "server.listen")
    parse_listen(server.admin_listen, "server.admin_listen")
    if server.tls_listen:
        parse_listen(server.tls_listen, "server.tls_listen")
        for key in ("tls_cert", "tls_key"):
            if not getattr(server, key):
                raise ConfigError(f"server.{key}: required when server.tls_listen is set")
            if not Path(getattr(server, key)).is_file():
                raise ConfigError(f"server.{key}: no such file {getattr(server, key)!r}")
    for index, cidr in enumerate(server.trusted_proxies):
        _check_cidr(cidr, f"server.trusted_proxies[{index}]")
    if not re.fullmatch(r"/([A-Za-z0-9_-]+/)+", server.prefix):
        raise ConfigError(f"server.prefix: expected a path like '/__rec/', got {server.prefix!r}")
    for key in ("max_request_line_bytes", "max_header_bytes", "max_body_bytes"):
        if getattr(server, key) < 1024:
            raise ConfigError(f"server.{key}: must be at least 1024")
    if server.shutdown_grace < 0:
        raise ConfigError("server.shutdown_grace: must not be negative")
    for key in ("connect_timeout", "response_timeout", "idle_timeout", "keepalive_timeout"):
        if getattr(config.proxy, key) <= 0:
            raise ConfigError(f"proxy.{key}: must be positive")
    if config.proxy.max_connections_per_origin < 1:
        raise ConfigError("proxy.max_connections_per_origin: must be at least 1")
    if config.proxy.inject_scan_limit < 1024:
        raise ConfigError("proxy.inject_scan_limit: must be at least 1024")
    collect = config.collect
    if collect.max_body_bytes < 1024 or collect.max_decoded_bytes < collect.max_body_bytes:
        raise ConfigError(
            "collect.max_decoded_bytes: must be at least collect.max_body_bytes (>= 1024)"
        )
    for key in ("ip_rate", "session_rate", "new_sessions_per_hour"):
        if getattr(collect, key) <= 0:
            raise ConfigError(f"collect.{key}: must be positive")
    for key in ("ip_burst", "session_burst", "new_sessions_burst"):
        if getattr(collect, key) < 1:
            raise ConfigError(f"collect.{key}: must be at least 1")
    spool = config.spool
    if spool.segment_bytes < 4096:
        raise ConfigError("spool.segment_bytes: must be at least 4096")
    if spool.max_bytes < spool.segment_bytes:
        raise ConfigError("spool.max_bytes: must be at least spool.segment_bytes")
    if not 0 < spool.group_ms <= 1000:
        raise ConfigError("spool.group_ms: must be between 0 and 1000")
    if config.upstream.url != "local":
        _check_url(config.upstream.url, "upstream.url")
    upstream = config.upstream
    if upstream.ca_file and not Path(upstream.ca_file).is_file():
        raise ConfigError(f"upstream.ca_file: no such file {upstream.ca_file!r}")
    if not 1024 <= upstream.batch_bytes <= 64 * 1024 * 1024:
        raise ConfigError("upstream.batch_bytes: must be between 1024 and 67108864")
    for key in ("batch_wait", "timeout", "retry_initial", "circuit_cooldown"):
        if getattr(upstream, key) <= 0:
            raise ConfigError(f"upstream.{key}: must be positive")
    if upstream.retry_max < upstream.retry_initial:
        raise ConfigError("upstream.retry_max: must be at least upstream.retry_initial")
    for key in ("max_connections", "circuit_failures"):
        if getattr(upstream, key) < 1:
            raise ConfigError(f"upstream.{key}: must be at least 1")
    store = config.store
    for key in ("finalize_after", "session_gap", "sweep_interval", "share_days"):
        if getattr(store, key) <= 0:
            raise ConfigError(f"store.{key}: must be positive")
    if store.retention_days < 1:
        raise ConfigError("store.retention_days: must be at least 1")
    if store.max_batch_bytes < 64 * 1024:
        raise ConfigError("store.max_batch_bytes: must be at least 65536")
    _validate_sites(config.sites)


def _validate_sites(sites: list[SiteConfig]) -> None:
    keys: dict[str, int] = {}
    hosts: dict[str, int] = {}
    for index, site in enumerate(sites):
        where = f"sites[{index}]"
        if not _SITE_KEY.match(site.key):
            raise ConfigError(f"{where}.key: 1-64 characters of [A-Za-z0-9_-], got {site.key!r}")
        if site.key in keys:
            raise ConfigError(
                f"{where}.key: {site.key!r} is already used by sites[{keys[site.key]}]"
            )
        keys[site.key] = index
        _check_url(site.origin, f"{where}.origin")
        if not site.hosts:
            raise ConfigError(f"{where}.hosts: at least one host name is required")
        for h_index, host in enumerate(site.hosts):
            name = host_key(host)
            if not _is_host_pattern(host.lower().rstrip(".")):
                raise ConfigError(
                    f"{where}.hosts[{h_index}]: not a host name or *.wildcard: {host!r}"
                )
            if name in hosts:
                raise ConfigError(
                    f"{where}.hosts[{h_index}]: {host!r} is already claimed by sites[{hosts[name]}]"
                )
            hosts[name] = index
        if site.monthly_limit is not None and site.monthly_limit < 0:
            raise ConfigError(f"{where}.monthly_limit: must not be negative")
        rec = site.recording
        if not 0.0 <= rec.sample_rate <= 1.0:
            raise ConfigError(f"{where}.recording.sample_rate: must be between 0 and 1")
        for p_index, pattern in enumerate(rec.exclude):
            if not pattern.startswith("/"):
                raise ConfigError(
                    f"{where}.recording.exclude[{p_index}]: a path pattern starts with '/'"
                )
        for c_index, cidr in enumerate(rec.block.ips):
            _check_cidr(cidr, f"{where}.recording.block.ips[{c_index}]")
        for u_index, ua in enumerate(rec.block.user_agents):
            try:
                re.compile(ua, re.IGNORECASE)
            except re.error as exc:
                raise ConfigError(
                    f"{where}.recording.block.user_agents[{u_index}]: bad pattern: {exc}"
                ) from exc
        if rec.consent_cookie.name and not rec.consent_cookie.values:
            raise ConfigError(f"{where}.recording.consent_cookie.values: name is set but no values")
        if site.origin_ca and not Path(site.origin_ca).is_file():
            raise ConfigError(f"{where}.origin_ca: no such file {site.origin_ca!r}")


def _is_host_pattern(name: str) -> bool:
    if _HOST_NAME.match(name):
        return True
    bracketed = name.startswith("[") and name.endswith("]")
    try:
        address = ipaddress.ip_address(name[1:-1] if bracketed else name)
    except ValueError:
        return False
    return address.version == 6 or not bracketed


def _check_url(value: str, key: str) -> None:
    try:
        parts = urlsplit(value)
    except ValueError as exc:  # an unbalanced IPv6 bracket
        raise ConfigError(f"{key}: not a URL: {value!r} ({exc})") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{key}: expected an http:// or https:// URL, got {value!r}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ConfigError(f"{key}: bad port in {value!r}") from exc
    if parts.query or parts.fragment:
        raise ConfigError(f"{key}: must not have a query or fragment: {value!r}")


def _check_cidr(value: str, key: str) -> None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise ConfigError(f"{key}: not an IP address or CIDR range: {value!r}") from exc


def node_name(config: Config) -> str:
    return config.server.node_name or f"gateway-{socket.gethostname()}"


def to_toml_dict(config: Config) -> dict[str, object]:
    """The effective config as plain data (admin token hidden) for check-config."""
    data = msgspec.to_builtins(config)
    assert isinstance(data, dict)
    if data["server"].get("admin_token"):
        data["server"]["admin_token"] = "***"
    return data
