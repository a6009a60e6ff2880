"""`lablink serve`: plugged into the core's CLI through the `lablink.commands` entry point."""

from __future__ import annotations

import argparse
import logging
import os
import signal

from lablink_core.config import LablinkConfig, load_config


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the dashboard and API (starting a private PostgreSQL if none is configured)",
    )
    serve.add_argument("--host", help="address to listen on (default: app.host)")
    serve.add_argument("--port", type=int, help="port (default: app.port, 5000)")
    serve.add_argument(
        "--processes",
        help="server processes sharing the port, or 'auto' for one per core (app.processes)",
    )
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
    from dashboard.prefork import process_count

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
    count = process_count(args.processes or config.app.processes)
    if count > 1:
        return serve_forked(config, args, count)
    return serve_one(config, args)


def serve_one(config: LablinkConfig, args: argparse.Namespace) -> int:
    from dashboard.server import create_server, run_server

    server, runtime = create_server(config, port=args.port, address=args.host)
    host = args.host or config.app.host

    def announce() -> None:
        print_banner(
            config, host, server.port, runtime.admin.user, runtime.admin.generated_password
        )

    print(run_server(server, runtime, on_ready=announce), flush=True)
    return 0


def print_banner(
    config: LablinkConfig, host: str, port: int, admin_user: str, generated: str | None
) -> None:
    scheme = "https" if config.app.ssl_certfile else "http"
    shown = "localhost" if host in ("0.0.0.0", "127.0.0.1") else host  # noqa: S104
    print(f"LabLink is serving on {scheme}://{shown}:{port}/", flush=True)
    print(f"  admin pages: {scheme}://{shown}:{port}/admin (user {admin_user})", flush=True)
    if generated:
        print(f"  generated admin password (shown once, stored hashed): {generated}", flush=True)
    print("  admin API token for scripts: `lablink admin token`", flush=True)
    print("Press Ctrl-C to stop.", flush=True)


def serve_forked(config: LablinkConfig, args: argparse.Namespace, count: int) -> int:
    """The parent of ``--processes N``: shared preparation, N children, their supervision."""
    from dashboard import prefork
    from lablink_core.shared_buckets import SharedBuckets

    stop_database = prefork.share_private_database(config)
    metrics_dir = prefork.fresh_metrics_dir()
    try:
        user, generated = prefork.prepare_database(config)
        host = args.host or config.app.host
        port = prefork.checked_port(args.port or config.app.port, host)
        # Made before the fork, so that every child takes from the same buckets.
        buckets = SharedBuckets()
        children = prefork.Children(
            lambda index: prefork.fork_child(
                lambda i: prefork.run_child(config, host, port, i, buckets), index
            )
        )
        children.start(count)

        def stop(*_: object) -> None:
            children.stopping = True
            children.signal_all(signal.SIGTERM)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        print_banner(config, host, port, user, generated)
        print(f"  {count} server processes", flush=True)
        status = children.supervise()
    finally:
        stop_database()
        prefork.remove_metrics_dir(metrics_dir)
    print(f"LabLink stopped: {count} server processes.", flush=True)
    return status
