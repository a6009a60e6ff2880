"""`lablink serve`: plugged into the core's CLI through the `lablink.commands` entry point."""

from __future__ import annotations

import argparse
import logging
import os

from lablink_core.config import load_config


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the dashboard and API (starting a private PostgreSQL if none is configured)",
    )
    serve.add_argument("--host", help="address to listen on (default: app.host)")
    serve.add_argument("--port", type=int, help="port (default: app.port, 5000)")
    serve.add_argument(
        "--ssl-certfile", help="TLS certificate (PEM): serve https (app.ssl_certfile)"
    )
    serve.add_argument("--ssl-keyfile", help="TLS private key (PEM) of the certificate")
    serve.add_argument(
        "--access-log",
        action="store_true",
        help="log every request (by default only 4xx/5xx answers are logged)",
    )
    serve.set_defaults(handler=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    from dashboard.server import create_server, run_server

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not args.access_log:
        # One INFO line per request is a sixth of the cost of answering a waking VM.
        logging.getLogger("tornado.access").setLevel(logging.WARNING)
    config = load_config(args.config or os.environ.get("LABLINK_CONFIG"))
    if args.ssl_certfile or args.ssl_keyfile:
        config.app.ssl_certfile = args.ssl_certfile or config.app.ssl_certfile
        config.app.ssl_keyfile = args.ssl_keyfile or config.app.ssl_keyfile
    server, runtime = create_server(config, port=args.port, address=args.host)
    port = server.port
    host = args.host or config.app.host
    scheme = "https" if config.app.ssl_certfile else "http"

    def announce() -> None:
        shown = "localhost" if host in ("0.0.0.0", "127.0.0.1") else host  # noqa: S104
        print(f"LabLink is serving on {scheme}://{shown}:{port}/", flush=True)
        print(
            f"  admin pages: {scheme}://{shown}:{port}/admin (user {runtime.admin.user})",
            flush=True,
        )
        if runtime.admin.generated_password:
            print(
                f"  generated admin password (shown once, stored hashed): "
                f"{runtime.admin.generated_password}",
                flush=True,
            )
        print("  admin API token for scripts: `lablink admin token`", flush=True)
        print("Press Ctrl-C to stop.", flush=True)

    print(run_server(server, runtime, on_ready=announce), flush=True)
    return 0
