"""Configuration: the shipped files, the documented smallest config, refusals, overrides."""

from __future__ import annotations

import re
import tomllib
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gateway.config import (
    ENV_OVERRIDES,
    PLAN_LIMITS,
    Config,
    ConfigError,
    RecordingConfig,
    SiteConfig,
    config_path,
    load_config,
    parse_config,
    to_toml_dict,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "gateway.example.toml"
DEFAULT = ROOT / "config" / "gateway.toml"
SECOND_SITE_MARKER = "# A second site"

# Verbatim from ARCHITECTURE.md, "The smallest config".
SMALLEST = """
[server]
listen = "127.0.0.1:8080"        # the edge listener
admin_listen = "127.0.0.1:9090"  # metrics, health, API, dashboard
admin_token = "change-me"        # or the GATEWAY_ADMIN_TOKEN environment variable
data_dir = "./data"              # spool and embedded store

[upstream]
url = "local"                    # the embedded store; or "http://host:port" of a `gateway store`

[store]
finalize_after = 180             # seconds without events before a recording is shown
retention_days = 10

[[sites]]
key = "demo"
hosts = ["localhost", "127.0.0.1"]
origin = "http://127.0.0.1:8000"
plan = "standard"                # or "pro", or monthly_limit = N

[sites.recording]
enabled = true
record_mobile = true
mask_inputs = true
mask_numbers = true
mask_emails = true
exclude = ["/admin/*"]
consent = "none"                 # "opt-in" | "opt-out"
respect_gpc = true
"""

SITE = """
[[sites]]
key = "shop"
hosts = ["shop.test"]
origin = "http://127.0.0.1:8000"
"""


def parse(text: str, env: dict[str, str] | None = None) -> Config:
    return parse_config(text, env={} if env is None else env)


def refused(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, env)
    return str(info.value)


# --- the shipped files ---------------------------------------------------------------


def test_example_parses() -> None:
    config = load_config(EXAMPLE, env={})
    assert [site.key for site in config.sites] == ["demo"]


def test_default_config_parses() -> None:
    config = load_config(DEFAULT, env={})
    assert config.sites[0].key == "demo"
    assert config.server.listen == "127.0.0.1:8080"


def test_example_second_site_parses_when_uncommented() -> None:
    text = EXAMPLE.read_text()
    head, marker, tail = text.partition(SECOND_SITE_MARKER)
    assert marker, "the example lost its commented second [[sites]]"
    uncommented = "\n".join(re.sub(r"^# ?", "", line) for line in tail.splitlines()[1:])
    config = parse(head + uncommented)
    second = config.sites[1]
    assert any(host.startswith("*.") for host in second.hosts)
    assert second.plan == "pro"
    assert second.monthly_limit is not None and second.limit == second.monthly_limit
    rec = second.recording
    assert rec.consent == "opt-in"
    assert rec.consent_cookie.name and rec.consent_cookie.values
    assert rec.block.ips and rec.block.user_agents and rec.block.visitors


def _struct_type(annotation: Any) -> type[msgspec.Struct] | None:
    """The Struct a field holds, directly or as list[Struct]."""
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return annotation
    for arg in typing.get_args(annotation):
        found = _struct_type(arg)
        if found is not None:
            return found
    return None


def _walk(struct: type[msgspec.Struct], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Key paths of every field below `struct`, tables included (list[Struct] as one table)."""
    paths: list[tuple[str, ...]] = []
    for field in msgspec.structs.fields(struct):
        here = (*path, field.name)
        paths.append(here)
        inner = _struct_type(field.type)
        if inner is not None:
            paths.extend(_walk(inner, here))
    return paths


def _default(struct: type[msgspec.Struct], path: tuple[str, ...]) -> Any:
    """The default of the field at `path` (NODEFAULT for required ones)."""
    *tables, name = path
    for table in tables:
        field = next(f for f in msgspec.structs.fields(struct) if f.name == table)
        inner = _struct_type(field.type)
        assert inner is not None
        struct = inner
    field = next(f for f in msgspec.structs.fields(struct) if f.name == name)
    if field.default_factory is not msgspec.NODEFAULT:
        return field.default_factory()
    return field.default


def _lookup(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = data
    for part in path:
        if isinstance(node, list):
            node = node[0]
        node = node[part]
    return node


def test_walk_finds_nested_keys() -> None:
    paths = _walk(Config)
    assert ("server", "listen") in paths
    assert ("sites", "recording", "block", "user_agents") in paths
    assert ("sites", "recording", "consent_cookie", "values") in paths
    assert len(paths) == len(set(paths)) > 50


def test_example_has_every_key_set_to_its_default() -> None:
    text = EXAMPLE.read_text()
    data = tomllib.loads(text)
    missing: list[str] = []
    wrong: list[str] = []
    paths = _walk(Config)
    tables = {path[:-1] for path in paths if len(path) > 1}
    for path in paths:
        dotted = ".".join(path)
        default = _default(Config, path)
        if default is None:
            # Not expressible in TOML: shown commented out in its table.
            main = text.partition(SECOND_SITE_MARKER)[0]
            if not re.search(rf"^#\s*{path[-1]}\s*=", main, re.M):
                missing.append(dotted)
            continue
        try:
            value = _lookup(data, path)
        except KeyError:
            missing.append(dotted)
            continue
        if default is msgspec.NODEFAULT or path in tables:
            continue  # required, or a table (its keys are checked one by one)
        if value != msgspec.to_builtins(default):
            wrong.append(f"{dotted} = {value!r}, default {default!r}")
    assert not missing, f"keys missing from the example: {missing}"
    assert not wrong, f"example values that are not the default: {wrong}"


def test_example_comments_every_key() -> None:
    lines = EXAMPLE.read_text().splitlines()
    uncommented: list[str] = []
    for number, line in enumerate(lines):
        match = re.match(r"([a-z_]+)\s*=", line)
        if match and not lines[number - 1].lstrip().startswith("#"):
            uncommented.append(match.group(1))
    assert not uncommented


def test_example_mentions_the_environment() -> None:
    text = EXAMPLE.read_text()
    for var, (table, key) in ENV_OVERRIDES.items():
        assert re.search(rf"{var}\s+->\s+{table}\.{key}\b", text), var
    assert "GATEWAY_CONFIG" in text


# --- the smallest config ---------------------------------------------------------------


def test_smallest_config_means_what_it_says() -> None:
    config = parse(SMALLEST)
    assert config.server.listen == "127.0.0.1:8080"
    assert config.server.admin_listen == "127.0.0.1:9090"
    assert config.server.admin_token == "change-me"
    assert config.server.data_dir == "./data"
    assert config.upstream.url == "local"
    assert config.store.finalize_after == 180
    assert config.store.retention_days == 10
    [site] = config.sites
    assert site.key == "demo"
    assert site.hosts == ["localhost", "127.0.0.1"]
    assert site.origin == "http://127.0.0.1:8000"
    assert site.plan == "standard"
    assert site.limit == 10_000
    rec = site.recording
    assert (rec.enabled, rec.record_mobile, rec.mask_inputs) == (True, True, True)
    assert (rec.mask_numbers, rec.mask_emails, rec.respect_gpc) == (True, True, True)
    assert rec.exclude == ["/admin/*"]
    assert rec.consent == "none"


def test_smallest_config_values_are_not_just_the_defaults() -> None:
    changed = (
        SMALLEST.replace('"127.0.0.1:8080"', '"0.0.0.0:80"')
        .replace("finalize_after = 180", "finalize_after = 30")
        .replace("enabled = true", "enabled = false")
        .replace('consent = "none"', 'consent = "opt-out"')
        .replace("respect_gpc = true", "respect_gpc = false")
    )
    config = parse(changed)
    assert config.server.listen == "0.0.0.0:80"
    assert config.store.finalize_after == 30
    rec = config.sites[0].recording
    assert (rec.enabled, rec.consent, rec.respect_gpc) == (False, "opt-out", False)


def test_empty_config_is_all_defaults() -> None:
    config = parse("")
    assert config == Config()
    assert config.server.admin_token == ""
    assert config.store.finalize_after == 180
    assert config.store.retention_days == 10
    assert config.sites == []
    assert RecordingConfig().respect_gpc is True


# --- refusals --------------------------------------------------------------------------

REFUSALS = {
    "unknown top-level key": ("bogus = 1\n", "bogus: unknown key"),
    "unknown server key": ("[server]\nbogus = 1\n", "server.bogus: unknown key"),
    "unknown recording key": (
        SITE + "[sites.recording]\nbogus = 1\n",
        "sites[0].recording.bogus: unknown key",
    ),
    "unknown block key": (
        SITE + "[sites.recording.block]\nnets = []\n",
        "sites[0].recording.block.nets: unknown key",
    ),
    "wrong type": (
        SITE + '[sites.recording]\nenabled = "yes"\n',
        "sites[0].recording.enabled: Expected bool, got str",
    ),
    "wrong type in a list": (
        SITE + "[sites.recording]\nexclude = [1]\n",
        "sites[0].recording.exclude[0]: Expected str",
    ),
    "table given as a value": ("server = 1\n", "server: Expected object, got int"),
    "missing required key": (
        '[[sites]]\nhosts = ["a.test"]\norigin = "http://o.test"\n',
        "sites[0].key: missing required key",
    ),
    "unknown plan": (SITE + 'plan = "gold"\n', "sites[0].plan: Invalid enum value 'gold'"),
    "negative monthly_limit": (SITE + "monthly_limit = -1\n", "sites[0].monthly_limit: "),
    "origin ftp": (SITE.replace("http://127.0.0.1:8000", "ftp://x"), "sites[0].origin: "),
    "origin without host": (SITE.replace("http://127.0.0.1:8000", "http://"), "sites[0].origin: "),
    "origin not a url": (SITE.replace("http://127.0.0.1:8000", "not a url"), "sites[0].origin: "),
    "origin bad port": (
        SITE.replace("http://127.0.0.1:8000", "http://o.test:99999"),
        "sites[0].origin: bad port",
    ),
    "origin unbalanced bracket": (
        SITE.replace("http://127.0.0.1:8000", "http://[::1"),
        "sites[0].origin: ",
    ),
    "origin with query": (
        SITE.replace("http://127.0.0.1:8000", "http://o.test/?a=1"),
        "sites[0].origin: must not have a query",
    ),
    "upstream not a url": ('[upstream]\nurl = "store:9000"\n', "upstream.url: "),
    "listen without port": ('[server]\nlisten = "127.0.0.1"\n', "server.listen: "),
    "listen without host": ('[server]\nlisten = ":8080"\n', "server.listen: "),
    "listen port too big": ('[server]\nlisten = "127.0.0.1:65536"\n', "server.listen: "),
    "listen port not a number": ('[server]\nlisten = "127.0.0.1:http"\n', "server.listen: "),
    "admin_listen bad": ('[server]\nadmin_listen = "nowhere"\n', "server.admin_listen: "),
    "listen wrong type": ("[server]\nlisten = 8080\n", "server.listen: Expected str, got int"),
    "host claimed twice": (
        SITE
        + SITE.replace('"shop"', '"other"').replace('["shop.test"]', '["x.test", "Shop.Test."]'),
        "sites[1].hosts[1]: 'Shop.Test.' is already claimed by sites[0]",
    ),
    "ipv6 host claimed twice": (
        SITE.replace('["shop.test"]', '["::1"]')
        + SITE.replace('"shop"', '"other"').replace('["shop.test"]', '["[0:0::1]"]'),
        "sites[1].hosts[0]: '[0:0::1]' is already claimed by sites[0]",
    ),
    "wildcard claimed twice": (
        SITE.replace('["shop.test"]', '["*.shop.test"]')
        + SITE.replace('"shop"', '"other"').replace('["shop.test"]', '["*.SHOP.test"]'),
        "sites[1].hosts[0]: '*.SHOP.test' is already claimed by sites[0]",
    ),
    "duplicate site key": (
        SITE + SITE.replace('["shop.test"]', '["other.test"]'),
        "sites[1].key: 'shop' is already used by sites[0]",
    ),
    "bad site key": (SITE.replace('"shop"', '"my shop"'), "sites[0].key: "),
    "no hosts": (SITE.replace('["shop.test"]', "[]"), "sites[0].hosts: "),
    "bad host": (SITE.replace('["shop.test"]', '["shop.test", "a b"]'), "sites[0].hosts[1]: "),
    "wildcard in the middle": (
        SITE.replace('["shop.test"]', '["a.*.test"]'),
        "sites[0].hosts[0]: ",
    ),
    "bracketed ipv4 host": (
        SITE.replace('["shop.test"]', '["[127.0.0.1]"]'),
        "sites[0].hosts[0]: ",
    ),
    "bad block cidr": (
        SITE + '[sites.recording.block]\nips = ["10.0.0.0/8", "10.0.0.0/33"]\n',
        "sites[0].recording.block.ips[1]: not an IP address or CIDR range",
    ),
    "bad block ip": (
        SITE + '[sites.recording.block]\nips = ["300.1.1.1"]\n',
        "sites[0].recording.block.ips[0]: ",
    ),
    "bad trusted proxy": (
        '[server]\ntrusted_proxies = ["10.0.0.1", "lb.internal"]\n',
        "server.trusted_proxies[1]: not an IP address or CIDR range",
    ),
    "bad user-agent regex": (
        SITE + '[sites.recording.block]\nuser_agents = ["ok", "bot("]\n',
        "sites[0].recording.block.user_agents[1]: bad pattern",
    ),
    "sample_rate above 1": (
        SITE + "[sites.recording]\nsample_rate = 1.5\n",
        "sites[0].recording.sample_rate: must be between 0 and 1",
    ),
    "sample_rate negative": (
        SITE + "[sites.recording]\nsample_rate = -0.1\n",
        "sites[0].recording.sample_rate: ",
    ),
    "exclude without slash": (
        SITE + '[sites.recording]\nexclude = ["/ok/*", "admin/*"]\n',
        "sites[0].recording.exclude[1]: a path pattern starts with '/'",
    ),
    "consent value": (
        SITE + '[sites.recording]\nconsent = "yes"\n',
        "sites[0].recording.consent: Invalid enum value 'yes'",
    ),
    "consent cookie without values": (
        SITE + '[sites.recording.consent_cookie]\nname = "cookieyes-consent"\n',
        "sites[0].recording.consent_cookie.values: ",
    ),
    "tls_listen without cert": (
        '[server]\ntls_listen = "127.0.0.1:8443"\n',
        "server.tls_cert: required when server.tls_listen is set",
    ),
    "tls cert missing file": (
        '[server]\ntls_listen = "127.0.0.1:8443"\ntls_cert = "/nonexistent/cert.pem"\n'
        'tls_key = "/nonexistent/key.pem"\n',
        "server.tls_cert: no such file",
    ),
    "bad prefix": ('[server]\nprefix = "__rec"\n', "server.prefix: "),
    "tiny body limit": ("[server]\nmax_body_bytes = 10\n", "server.max_body_bytes: "),
    "zero timeout": ("[proxy]\nconnect_timeout = 0\n", "proxy.connect_timeout: must be positive"),
    "zero retention": ("[store]\nretention_days = 0\n", "store.retention_days: "),
    "fractional retention": ("[store]\nretention_days = 1.5\n", "store.retention_days: "),
    "zero session gap": ("[store]\nsession_gap = 0\n", "store.session_gap: "),
    "zero sweep": ("[store]\nsweep_interval = -1\n", "store.sweep_interval: "),
    "tiny ingest bound": ("[store]\nmax_batch_bytes = 1000\n", "store.max_batch_bytes: "),
    "tiny upstream batch": ("[upstream]\nbatch_bytes = 10\n", "upstream.batch_bytes: "),
    "huge upstream batch": ("[upstream]\nbatch_bytes = 100000000\n", "upstream.batch_bytes: "),
    "zero batch wait": ("[upstream]\nbatch_wait = 0\n", "upstream.batch_wait: "),
    "zero export timeout": ("[upstream]\ntimeout = 0\n", "upstream.timeout: "),
    "retry max below initial": (
        "[upstream]\nretry_initial = 5.0\nretry_max = 1.0\n",
        "upstream.retry_max: ",
    ),
    "no circuit": ("[upstream]\ncircuit_failures = 0\n", "upstream.circuit_failures: "),
    "no connections": ("[upstream]\nmax_connections = 0\n", "upstream.max_connections: "),
    "missing upstream CA": ("[upstream]\nca_file = '/nonexistent.pem'\n", "upstream.ca_file: "),
    "unknown upstream key": ("[upstream]\nretries = 3\n", "upstream.retries"),
    "missing origin_ca": (SITE + 'origin_ca = "/nonexistent/ca.pem"\n', "sites[0].origin_ca: "),
}


@pytest.mark.parametrize(("text", "message"), REFUSALS.values(), ids=REFUSALS.keys())
def test_refused_naming_the_key(text: str, message: str) -> None:
    assert refused(text).startswith(message)


def test_refusal_names_the_offending_site() -> None:
    text = SITE + SITE.replace('"shop"', '"b"').replace('["shop.test"]', '["b.test"]')
    text += "[sites.recording]\nsample_rate = 2.0\n"
    assert refused(text).startswith("sites[1].recording.sample_rate: ")


def test_invalid_toml_is_refused() -> None:
    message = refused('[server]\nlisten = "127.0.0.1:8080\n')
    assert message.startswith("config: invalid TOML")


def test_invalid_toml_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text("[[sites]\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: invalid TOML"):
        load_config(path, env={})


def test_missing_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: cannot read config file"):
        load_config(path, env={})


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[server]\nnode_name = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: not UTF-8"):
        load_config(path, env={})


def test_accepted_edge_values() -> None:
    text = (
        '[server]\nlisten = "[::1]:0"\ntrusted_proxies = ["10.0.0.0/8", "2001:db8::1"]\n'
        + SITE.replace('["shop.test"]', '["shop.test", "*.shop.test", "::1", "SHOP2.test."]')
        + '[sites.recording]\nsample_rate = 0\nexclude = ["/", "/admin/*"]\n'
        + '[sites.recording.block]\nips = ["192.168.0.1", "fd00::/8"]\nuser_agents = ["(?:bot)s?"]\n'
    )
    config = parse(text)
    assert config.server.listen == "[::1]:0"
    assert config.sites[0].recording.sample_rate == 0


def test_tls_listener_with_files_is_accepted(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("x")
    text = f'[server]\ntls_listen = "127.0.0.1:0"\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
    assert parse(text).server.tls_cert == str(cert)


# --- environment overrides -------------------------------------------------------------


def test_env_overrides_apply() -> None:
    env = {
        "GATEWAY_ADMIN_TOKEN": "s3cret",
        "GATEWAY_LISTEN": "0.0.0.0:80",
        "GATEWAY_ADMIN_LISTEN": "127.0.0.1:9999",
        "GATEWAY_DATA_DIR": "/var/lib/gateway",
        "GATEWAY_UPSTREAM_URL": "http://store.internal:8080",
    }
    config = parse(SMALLEST, env)
    assert config.server.admin_token == "s3cret"
    assert config.server.listen == "0.0.0.0:80"
    assert config.server.admin_listen == "127.0.0.1:9999"
    assert config.server.data_dir == "/var/lib/gateway"
    assert config.upstream.url == "http://store.internal:8080"


def test_env_overrides_apply_to_an_empty_file() -> None:
    config = parse("", {"GATEWAY_ADMIN_TOKEN": "tok", "GATEWAY_LISTEN": "127.0.0.1:1"})
    assert config.server.admin_token == "tok"
    assert config.server.listen == "127.0.0.1:1"


def test_empty_env_value_is_ignored() -> None:
    assert parse(SMALLEST, {"GATEWAY_ADMIN_TOKEN": ""}).server.admin_token == "change-me"


def test_process_environment_is_used_without_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", "from-env")
    assert parse_config(SMALLEST).server.admin_token == "from-env"
    assert parse_config(SMALLEST, env={}).server.admin_token == "change-me"


def test_bad_env_listen_is_refused_naming_the_key() -> None:
    assert refused(SMALLEST, {"GATEWAY_LISTEN": "localhost"}).startswith("server.listen: ")


def test_bad_env_upstream_is_refused_naming_the_key() -> None:
    message = refused(SMALLEST, {"GATEWAY_UPSTREAM_URL": "ftp://store"})
    assert message.startswith("upstream.url: ")


def test_env_with_a_non_table_is_refused_not_crashed() -> None:
    message = refused('server = "x"\n', {"GATEWAY_LISTEN": "127.0.0.1:1"})
    assert message.startswith("server: Expected object")


def test_config_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    assert config_path(None) == Path("config/gateway.toml")
    monkeypatch.setenv("GATEWAY_CONFIG", "/etc/gw.toml")
    assert config_path(None) == Path("/etc/gw.toml")
    assert config_path("other.toml") == Path("other.toml")


def test_effective_config_hides_the_token() -> None:
    data = to_toml_dict(parse(SMALLEST))
    assert data["server"]["admin_token"] == "***"  # type: ignore[index]
    assert "change-me" not in repr(data)
    assert to_toml_dict(parse(""))["server"]["admin_token"] == ""  # type: ignore[index]


# --- plans -----------------------------------------------------------------------------


def test_plan_limits() -> None:
    assert PLAN_LIMITS == {"standard": 10_000, "pro": 50_000}
    assert parse(SITE).sites[0].limit == 10_000
    assert parse(SITE + 'plan = "standard"\n').sites[0].limit == 10_000
    assert parse(SITE + 'plan = "pro"\n').sites[0].limit == 50_000


def test_monthly_limit_overrides_the_plan() -> None:
    assert parse(SITE + 'plan = "pro"\nmonthly_limit = 1234\n').sites[0].limit == 1234
    assert parse(SITE + "monthly_limit = 75000\n").sites[0].limit == 75_000
    assert parse(SITE + "monthly_limit = 0\n").sites[0].limit == 0


def test_site_defaults() -> None:
    site = parse(SITE).sites[0]
    assert site == SiteConfig(key="shop", hosts=["shop.test"], origin="http://127.0.0.1:8000")
    assert site.preserve_host and site.rewrite_location
    assert "hotjar" in site.recording.conflicting_scripts


def test_block_patterns_compile_one_by_one() -> None:
    """A pattern with an inline flag is valid on its own and must work as written."""
    from gateway.edge.sites import build_site

    config = parse_config(
        SITE + '[sites.recording.block]\nuser_agents = ["curl", "(?i)BOT"]\n', env={}
    )
    site = build_site(config.sites[0], prefix="/__rec/", recorder_digest="x")
    assert site.is_blocked(None, "Mozilla/5.0 somebot/1.0")
    assert site.is_blocked(None, "CURL/8.0")
    assert not site.is_blocked(None, "Mozilla/5.0 Firefox/130")
