"""The ``datahavn`` command.

Administration commands talk to a running hub's REST API (``--hub-url`` or
$DATAHAVN_HUB_URL; token from $DATAHAVN_ADMIN_TOKEN, never from argv, where
``ps`` would show it). Every failure prints one line and exits non-zero.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points

from . import admin, airlock_cli
from .audit_schema import KINDS
from .grants import InvalidGrant, isoformat, parse_until
from .hubclient import HubClient, HubError
from .names import InvalidName, check_dataset, check_project, check_user

DEFAULT_HUB_URL = "http://127.0.0.1:8000"
#: Entry points adding verbs: ``register(subparsers, common)`` (see ``hub_config/cli.py``).
COMMANDS_GROUP = "datahavn.commands"


@dataclass(frozen=True)
class Common:
    """Parent parsers a plugged-in verb may reuse: ``hub`` (--hub-url), ``out`` (--json)."""

    hub: argparse.ArgumentParser
    out: argparse.ArgumentParser


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2)."""

    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message} (see --help)")


def hub_from_args(args) -> HubClient:
    token = os.environ.get("DATAHAVN_ADMIN_TOKEN", "")
    if not token:
        raise HubError("DATAHAVN_ADMIN_TOKEN is not set: export an admin token of the hub")
    url = args.hub_url or os.environ.get("DATAHAVN_HUB_URL") or DEFAULT_HUB_URL
    if not url.startswith(("http://", "https://")):
        raise HubError(f"invalid hub URL {url!r}: it must start with http:// or https://")
    return HubClient(url, token)


def _table(rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    widths = {c: max(len(c), *(len(str(r.get(c) or "")) for r in rows)) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip()]
    for r in rows:
        lines.append("  ".join(str(r.get(c) or "").ljust(widths[c]) for c in columns).rstrip())
    return "\n".join(lines)


def print_rows(args, rows: list[dict], columns: list[str]) -> None:
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(_table(rows, columns))


def cmd_user_add(args):
    admin.add_user(hub_from_args(args), args.name)
    print(f"added user {args.name}")


def cmd_project_create(args):
    admin.create_project(hub_from_args(args), args.name, args.description)
    print(f"created project {args.name}")


def cmd_project_list(args):
    rows = admin.list_projects(hub_from_args(args))
    print_rows(args, rows, ["name", "members", "description", "created_by", "created_at"])


def cmd_grant(args):
    until = parse_until(args.until) if args.until else None
    grant = admin.grant(hub_from_args(args), args.user, args.project, until, args.reason)
    print(f"granted {grant.user} access to {grant.project}" + (f" until {grant.until}" if grant.until else ""))


def cmd_revoke(args):
    admin.revoke(hub_from_args(args), args.user, args.project)
    print(f"revoked {args.user}'s access to {args.project}; their {args.project} workspace is stopped")


def cmd_grants(args):
    rows = [vars(x) for x in admin.list_grants(hub_from_args(args), args.project, args.user)]
    print_rows(args, rows, ["project", "user", "status", "until", "reason", "by", "at", "revoked_by", "revoked_at"])


def _audit_filters(args) -> dict:
    return {k: getattr(args, k) for k in ("user", "project", "kind", "since", "until", "grep") if getattr(args, k)}


def _summary(event: dict, full: bool = False) -> str:
    if event.get("code") is not None:
        code = event["code"]
        if full:
            return code
        lines = code.strip().splitlines() or [""]
        first = lines[0][:60] + (" ..." if len(lines) > 1 or len(lines[0]) > 60 else "")
        return f"{first} [{len(lines)} lines, {len(code)} chars]" if first.endswith(" ...") else first
    if event.get("kind") == "execute_reply":
        return f"{event.get('status')} {event.get('duration_ms')} ms {event.get('output_bytes')} bytes"
    detail = event.get("detail")
    return " ".join(str(x) for x in (event.get("outcome"), json.dumps(detail) if detail else None) if x)


def cmd_audit_query(args):
    hub = hub_from_args(args)
    rows = hub.audit("/events", **_audit_filters(args)).json()
    if not rows:  # a name nobody has and no event carries is a typo, not an empty answer
        if args.user and not admin.user_exists(hub, args.user):
            raise admin.AdminError(f"no such user {args.user!r}, and no event names it")
        if args.project and not admin.project_exists(hub, args.project):
            raise admin.AdminError(f"no such project {args.project!r}, and no event names it")
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    table = [{**r, "who": r.get("actor") or "", "summary": _summary(r, args.full)} for r in rows]
    if args.full:  # the whole code, below each row
        for r in table:
            print(_table([r], ["seq", "time", "kind", "user", "project", "who"]).splitlines()[-1])
            if r.get("code") is not None:
                print("    " + r["summary"].replace("\n", "\n    "))
        return
    print(_table(table, ["seq", "time", "kind", "user", "project", "who", "summary"]))


def cmd_audit_export(args):
    body = hub_from_args(args).audit("/events", format=args.format).content
    if not args.output:
        sys.stdout.buffer.write(body)
        return
    # written next to the target, then renamed: an interrupted export leaves no half file
    tmp = f"{args.output}.part-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(body)
        os.replace(tmp, args.output)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise HubError(f"cannot write {args.output}: {e.strerror}") from None
    print(f"exported to {args.output}", file=sys.stderr)


def cmd_audit_verify(args):
    result = hub_from_args(args).audit("/verify").json()
    if result["ok"]:
        print(f"audit trail sound: {result['count']} records")
        return 0
    print(f"datahavn: error: audit trail broken at seq {result['first_bad_seq']}: {result['reason']}", file=sys.stderr)
    return 3


def _arg(check):
    """Validate a name while parsing, so a bad one never reaches the hub."""

    def convert(text):
        try:
            return check(text)
        except InvalidName as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = check.__name__.replace("check_", "") + " name"
    return convert


def _check_kind(text: str) -> str:
    if text not in KINDS:
        raise InvalidName(f"unknown event kind {text!r}: one of {', '.join(sorted(KINDS))}")
    return text


def _check_time(text: str) -> str:
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidName(f"invalid time {text!r}: use YYYY-MM-DD or ISO 8601") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return isoformat(when)


def _check_request_id(text: str) -> str:
    if not re.fullmatch(r"[0-9]{8}-[0-9a-f]{8}", text):
        raise InvalidName(f"invalid request id {text!r}: ids look like 20261202-1a2b3c4d (datahavn airlock list)")
    return text


USER, PROJECT, DATASET = _arg(check_user), _arg(check_project), _arg(check_dataset)
REQUEST_ID = _arg(_check_request_id)
KIND, TIME = _arg(_check_kind), _arg(_check_time)


def build_parser() -> Parser:
    hub_opts = Parser(add_help=False)
    hub_opts.add_argument("--hub-url", help=f"the hub's public URL (default: $DATAHAVN_HUB_URL or {DEFAULT_HUB_URL})")
    out_opts = Parser(add_help=False)
    out_opts.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = Parser(prog="datahavn", description="Datahavn: a secure analysis workspace for genomic data.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    u = sub.add_parser("user", help="manage users").add_subparsers(dest="action", required=True, parser_class=Parser)
    ua = u.add_parser("add", parents=[hub_opts], help="add a user")
    ua.add_argument("name", type=USER)
    ua.set_defaults(func=cmd_user_add)

    pr = sub.add_parser("project", help="manage projects").add_subparsers(
        dest="action", required=True, parser_class=Parser
    )
    pc = pr.add_parser("create", parents=[hub_opts], help="create a project")
    pc.add_argument("name", type=PROJECT)
    pc.add_argument("--description", default="", help="what the project is for")
    pc.set_defaults(func=cmd_project_create)
    pl = pr.add_parser("list", parents=[hub_opts, out_opts], help="list projects")
    pl.set_defaults(func=cmd_project_list)

    gr = sub.add_parser("grant", parents=[hub_opts], help="grant a user access to a project")
    gr.add_argument("user", type=USER)
    gr.add_argument("project", type=PROJECT)
    gr.add_argument("--until", help="last day of access (YYYY-MM-DD, UTC) or an ISO 8601 time with zone")
    gr.add_argument("--reason", default="", help="why access is granted (recorded)")
    gr.set_defaults(func=cmd_grant)

    rv = sub.add_parser("revoke", parents=[hub_opts], help="revoke a user's access and stop their workspace")
    rv.add_argument("user", type=USER)
    rv.add_argument("project", type=PROJECT)
    rv.set_defaults(func=cmd_revoke)

    gs = sub.add_parser("grants", parents=[hub_opts, out_opts], help="list grants: active, expired and revoked")
    gs.add_argument("--project", type=PROJECT)
    gs.add_argument("--user", type=USER)
    gs.set_defaults(func=cmd_grants)
    au = sub.add_parser("audit", help="read and verify the audit trail").add_subparsers(
        dest="action", required=True, parser_class=Parser
    )
    aq = au.add_parser("query", parents=[hub_opts, out_opts], help="list audit events")
    aq.add_argument("--user", type=USER)
    aq.add_argument("--project", type=PROJECT)
    aq.add_argument("--kind", type=KIND)
    aq.add_argument("--since", type=TIME, help="from this time (ISO 8601 or YYYY-MM-DD, UTC)")
    aq.add_argument("--until", type=TIME, help="before this time (ISO 8601 or YYYY-MM-DD, UTC)")
    aq.add_argument("--grep", help="only events whose text contains this (case-insensitive)")
    aq.add_argument("--full", action="store_true", help="show each event's whole code, not its first line")
    aq.set_defaults(func=cmd_audit_query)
    ae = au.add_parser("export", parents=[hub_opts], help="export the whole audit trail")
    ae.add_argument("--format", choices=["jsonl", "csv"], required=True)
    ae.add_argument("--output", help="file to write (default: standard output)")
    ae.set_defaults(func=cmd_audit_export)
    av = au.add_parser("verify", parents=[hub_opts], help="check the hash chain and signed checkpoints")
    av.set_defaults(func=cmd_audit_verify)
    # the hub machine's verbs (demo, dataset ...) plug in from the packages that hold them
    common = Common(hub=hub_opts, out=out_opts)
    airlock_cli.register(sub, common, {"id": REQUEST_ID, "user": USER, "project": PROJECT}, hub_from_args, _table,
                         Parser)  # fmt: skip
    for ep in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        ep.load()(sub, common)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args) or 0
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    except (InvalidName, InvalidGrant, HubError, admin.AdminError) as e:
        print(f"datahavn: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # run as ``python -m datahavn.cli``: use the module plugged-in verbs import, not a second copy of it
    from datahavn.cli import main as _main

    sys.exit(_main())
