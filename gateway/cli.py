"""Command line: `gateway serve | store | check-config | demo | recordings export ID`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from gateway.app import Gateway, serve_forever
from gateway.config import Config, ConfigError, config_path, load_config, to_toml_dict
from gateway.workers import WorkerRole, supervise

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("serve", "run the edge node (with the embedded store when upstream.url is local)"),
        ("store", "run a store node alone: ingest from remote edge nodes, the recordings API"),
        ("check-config", "validate the config and print the effective values"),
        ("demo", "run a demo shop with the gateway in front of it"),
    ):
        command = commands.add_parser(name, help=text)
        _config_option(command)
        if name == "serve":
            command.add_argument(
                "--workers",
                type=int,
                default=1,
                help="edge processes sharing the listeners (SO_REUSEPORT); default 1",
            )
    recordings = commands.add_parser("recordings", help="work with stored recordings")
    actions = recordings.add_subparsers(dest="action", required=True)
    export = actions.add_parser(
        "export", help="write one recording's rrweb events as JSON lines (from the admin API)"
    )
    export.add_argument("id", help="the recording id")
    export.add_argument("-o", "--output", help="file to write (default: standard output)")
    export.add_argument(
        "--admin", help="admin API base URL (default: http://<server.admin_listen>)"
    )
    _config_option(export)
    return parser


def _config_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "-c", "--config", help="config file (default: $GATEWAY_CONFIG or config/gateway.toml)"
    )


def _load(path_arg: str | None) -> Config:
    return load_config(config_path(path_arg))


def _run(coro: object) -> None:
    try:
        import uvloop

        uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep running without it
        asyncio.run(coro)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = _load(args.config)
    except ConfigError as exc:
        print(f"gateway: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        print(json.dumps(to_toml_dict(config), indent=2, sort_keys=True))
        return 0
    if args.command == "recordings":
        from gateway.export_cli import export_recording

        return export_recording(config, args.id, args.output, args.admin)
    try:
        if args.command == "serve":
            role = WorkerRole.from_env()
            if args.workers < 1:
                print("gateway: --workers: must be at least 1", file=sys.stderr)
                return EXIT_CONFIG
            if args.workers > 1 and role is None:
                path = str(config_path(args.config).resolve())
                return supervise(["serve", "-c", path], args.workers, config.server.shutdown_grace)
            _run(serve_forever(Gateway(config, worker=role)))
        elif args.command == "store":
            from gateway.store.node import StoreNode

            _run(serve_forever(StoreNode(config)))
        else:
            _run(_demo(config))
    except OSError as exc:
        print(f"gateway: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


async def _demo(config: Config) -> None:
    from aiohttp import web

    from gateway.demo.origin import build_demo_origin, demo_pages

    if not config.sites:
        raise OSError(0, "demo: the config has no [[sites]] to put the demo shop behind")
    origin = urlsplit(config.sites[0].origin)
    runner = web.AppRunner(build_demo_origin(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, origin.hostname, origin.port or 80).start()
    print(f"demo shop (origin) on {config.sites[0].origin}", flush=True)
    gateway = Gateway(config)

    async def announce() -> None:
        while gateway.listening is None:
            await asyncio.sleep(0.05)
        port = gateway.listening.edge[1]
        public = config.sites[0].hosts[0]
        print("\nOpen these pages through the gateway (view source to see the tag):", flush=True)
        for path, title in demo_pages():
            print(f"  http://{public}:{port}{path}  {title}", flush=True)
        admin_host, admin_port = gateway.listening.admin
        print(f"\nMetrics: http://{admin_host}:{admin_port}/metrics", flush=True)
        print(
            f"Dashboard: http://{admin_host}:{admin_port}/ (sign in with server.admin_token)",
            flush=True,
        )
        print(
            "Recordings (shown 3 minutes after the visitor leaves; live=1 shows running ones):\n"
            f"  curl -H 'Authorization: Bearer <server.admin_token>' "
            f"'http://{admin_host}:{admin_port}/api/v1/recordings?live=1'",
            flush=True,
        )

    waiter = asyncio.ensure_future(announce())
    try:
        await serve_forever(gateway)
    finally:
        waiter.cancel()
        await runner.cleanup()
