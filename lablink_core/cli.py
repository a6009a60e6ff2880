"""The ``lablink`` command: config, database and VM credential tools.

Commands that need more than the core (``lablink serve``, from the dashboard package) plug in
through the ``lablink.commands`` entry-point group, so this module never imports them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path

import yaml

from lablink_core import fleet_cli, schedule_cli
from lablink_core.config import ConfigError, LablinkConfig, load_config
from lablink_core.errors import LablinkError
from lablink_core.schema import init_sql

Handler = Callable[[argparse.Namespace], int]


def _config(args: argparse.Namespace) -> LablinkConfig:
    return load_config(args.config or os.environ.get("LABLINK_CONFIG"))


def cmd_config_show(args: argparse.Namespace) -> int:
    print(yaml.safe_dump(_config(args).masked(), sort_keys=False), end="")
    return 0


def cmd_config_reference(args: argparse.Namespace) -> int:
    from lablink_core.config.reference import markdown_reference

    sys.stdout.write(markdown_reference())
    return 0


def cmd_config_validate(args: argparse.Namespace) -> int:
    load_config(args.file, environ={})
    print(f"{args.file}: valid")
    return 0


def cmd_db_init_sql(args: argparse.Namespace) -> int:
    sql = init_sql(_config(args).db, with_role_and_database=not args.schema_only)
    if args.output in (None, "-"):
        sys.stdout.write(sql)
        return 0
    # It may carry the database password: readable by its owner only.
    descriptor = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # O_CREAT's mode applies to a new file only: an existing one is narrowed before writing.
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(sql)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from lablink_core.services import open_services

    services = open_services(_config(args))
    services.close(stop_database=False)
    print("database schema is up to date", file=sys.stderr)
    return 0


def cmd_vm_credential(args: argparse.Namespace) -> int:
    from lablink_core.services import open_services

    services = open_services(_config(args))
    try:
        enrolment = services.enrolment
        if args.rotate:
            print(enrolment.rotate(args.hostname))
        else:
            print(enrolment.enrol(args.hostname))
    finally:
        services.close(stop_database=False)
    return 0


def cmd_vm_revoke(args: argparse.Namespace) -> int:
    from lablink_core.errors import NotFound
    from lablink_core.services import open_services

    services = open_services(_config(args))
    try:
        if not services.enrolment.revoke(args.hostname):
            raise NotFound(f"No VM named {args.hostname}.")
    finally:
        services.close(stop_database=False)
    print(f"revoked the credential of {args.hostname}", file=sys.stderr)
    return 0


def cmd_admin_token(args: argparse.Namespace) -> int:
    from lablink_core.admin import load_admin_account
    from lablink_core.services import open_services

    config = _config(args)
    services = open_services(config)
    try:
        account = load_admin_account(
            services.engine, services.secrets, config.app.admin_user, config.app.admin_password
        )
        print(account.api_token)
    finally:
        services.close(stop_database=False)
    return 0


def _new_password(args: argparse.Namespace) -> str:
    if args.stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    first = getpass.getpass("New admin password: ")
    if getpass.getpass("Again: ") != first:
        raise LablinkError("the two passwords differ; nothing was changed")
    return first


def cmd_admin_set_password(args: argparse.Namespace) -> int:
    from lablink_core.admin import check_new_password, set_admin_password
    from lablink_core.services import open_services

    config = _config(args)
    password = check_new_password(_new_password(args))
    services = open_services(config)
    try:
        set_admin_password(services.engine, password)
    finally:
        services.close(stop_database=False)
    print("admin password changed; every admin session was logged out", file=sys.stderr)
    if config.app.admin_password:
        print(
            "note: app.admin_password is configured; the next server start stores that "
            "password again unless you change it there too",
            file=sys.stderr,
        )
    return 0


def _add(
    group: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Handler,
    text: str,
) -> argparse.ArgumentParser:
    parser = group.add_parser(name, help=text, description=text)
    parser.set_defaults(handler=handler)
    return parser


def _config_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = commands.add_parser("config", help="show or check the configuration")
    config_cmds = config.add_subparsers(dest="action", required=True)
    _add(config_cmds, "show", cmd_config_show, "print the effective config, secrets masked")
    validate = _add(config_cmds, "validate", cmd_config_validate, "check a config file")
    _add(config_cmds, "reference", cmd_config_reference, "every key, its default and meaning")
    validate.add_argument("file", type=Path)


def _db_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = commands.add_parser("db", help="database schema tools")
    db_cmds = db.add_subparsers(dest="action", required=True)
    sql = _add(db_cmds, "init-sql", cmd_db_init_sql, "write init.sql (role, database, schema)")
    sql.add_argument("-o", "--output", help="file to write (mode 0600); default stdout")
    sql.add_argument("--schema-only", action="store_true", help="omit role and database")
    _add(db_cmds, "upgrade", cmd_db_upgrade, "create or upgrade the schema in place")


def _vm_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    vm = commands.add_parser("vm", help="VM tools")
    vm_cmds = vm.add_subparsers(dest="action", required=True)
    credential = _add(
        vm_cmds,
        "credential",
        cmd_vm_credential,
        "enrol a machine by hand: print its credential (issued, with its row, if it has none)",
    )
    credential.add_argument("hostname")
    credential.add_argument(
        "--rotate", action="store_true", help="issue a new one; the old one stops working"
    )
    revoke = _add(vm_cmds, "revoke", cmd_vm_revoke, "revoke a VM's credential (it gets 401)")
    revoke.add_argument("hostname")


def _admin_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    admin = commands.add_parser("admin", help="admin account tools")
    admin_cmds = admin.add_subparsers(dest="action", required=True)
    _add(admin_cmds, "token", cmd_admin_token, "print the admin API token (Bearer) for scripts")
    setpw = _add(
        admin_cmds,
        "set-password",
        cmd_admin_set_password,
        "change the admin password (asks twice) and log out every admin session",
    )
    setpw.add_argument(
        "--stdin", action="store_true", help="read the new password from one line of stdin"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lablink", description="LabLink allocator tools.")
    parser.add_argument("--config", help="YAML config file (default: $LABLINK_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)
    for register_own in (_config_commands, _db_commands, _vm_commands, _admin_commands):
        register_own(commands)
    fleet_cli.register(commands)
    schedule_cli.register(commands)
    # Other packages (the dashboard's `serve`) add their commands through an entry point.
    for plugin in entry_points(group="lablink.commands"):
        register: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]
        register = plugin.load()
        register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except ConfigError as error:
        print(f"lablink: {error}", file=sys.stderr)
        return 2
    except LablinkError as error:
        print(f"lablink: {error.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
