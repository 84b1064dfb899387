"""``datahavn airlock``: export requests from the command line, under the same rules as the page.

List, show and ``checker add|remove`` act as the owner of $DATAHAVN_ADMIN_TOKEN; review verbs
and downloads need a checker's own token in that variable (an administrator is not a checker).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .hubclient import HubError
from .tokens import CHECKER_GROUP

STATES = ("requested", "under_review", "approved", "released", "rejected", "returned", "withdrawn")
REVIEW_VERBS = ("approve", "reject", "return", "release", "withdraw")


def _hub(args):
    return args.make_hub(args)  # the CLI's one way to a hub client (cli.hub_from_args)


def cmd_list(args):
    params = {k: v for k, v in (("state", args.state), ("project", args.project)) if v}
    hub = _hub(args)
    rows = hub.airlock("GET", "/requests", params=params).json()["requests"]
    if not rows and args.project and hub.group(args.project) is None:
        raise HubError(f"no such project {args.project!r}")
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(args.table([{**r, "files": ", ".join(f["path"] for f in r["files"]), "approvals": len(r["approvals"]),
                   "created": r["created"][:19]} for r in rows],
                 ["id", "user", "project", "state", "files", "approvals", "created"]))  # fmt: skip


def cmd_show(args):
    r = _hub(args).airlock("GET", f"/requests/{args.id}").json()
    if args.json:
        print(json.dumps(r, indent=2))
        return
    print(f"request {r['id']}: {r['state']}, by {r['user']} in {r['project']} ({r['output_type']}), {r['created']}")
    print(f"justification: {r['justification']}")
    for f in r["files"]:
        print(f"  {f['path']}  {f['size']:,} bytes  sha256 {f['sha256']}")
        for c in f["checks"]:
            print(f"    {c['verdict']:<6} {c['name']}: {c['detail']}")
    for v in r["reviews"]:
        print(f"  {v['time'][:19]}  {v['actor']}  {v['action']}  {v['comment']}")


def cmd_review(args):
    body = {"comment": args.comment or ""}
    r = _hub(args).airlock("POST", f"/requests/{args.id}/{args.verb}", json=body).json()
    print(f"request {r['id']}: {r['state']} (approvals: {', '.join(r['approvals']) or 'none'})")


def cmd_download(args):
    hub = _hub(args)
    r = hub.airlock("GET", f"/requests/{args.id}").json()
    out = Path(args.output or ".")
    if not out.is_dir():
        raise HubError(f"--output {out} is not a folder")
    targets = [out / os.path.basename(f["path"]) for f in r["files"]]
    clash = [str(t) for t in targets if t.exists()]
    if clash or len(set(targets)) != len(targets):
        raise HubError(f"not overwriting: {', '.join(clash) or 'two files share a name'}")
    for f, target in zip(r["files"], targets, strict=True):
        data = hub.airlock("GET", f"/requests/{args.id}/files/{f['n']}").content
        if hashlib.sha256(data).hexdigest() != f["sha256"]:
            raise HubError(f"{f['path']}: what arrived does not match its SHA-256; nothing written for it")
        target.write_bytes(data)
        print(f"{target}  {len(data):,} bytes  sha256 {f['sha256']}")


def cmd_checker(args):
    hub = _hub(args)
    if args.verb == "add":
        if hub.user(args.user) is None:
            raise HubError(f"no such user {args.user!r}: add them first (datahavn user add)")
        hub.add_member(CHECKER_GROUP, args.user)
        print(f"{args.user} is an output checker (their next sign-in to the airlock carries the role)")
    else:
        if hub.user(args.user) is None:
            raise HubError(f"no such user {args.user!r}")
        hub.remove_member(CHECKER_GROUP, args.user)
        print(f"{args.user} is no longer an output checker (checkers named in the hub's config stay)")


def register(sub, common, types: dict, make_hub, table, Parser) -> None:  # noqa: N803 (a class)
    """Add ``airlock`` and its verbs; ``types``: argparse types for "id", "user", "project"."""
    hub_opts, out_opts = common.hub, common.out
    id_type, user_type, project_type = types["id"], types["user"], types["project"]
    al = sub.add_parser("airlock", help="export requests: list, review, download; output checkers")
    al.set_defaults(make_hub=make_hub, table=table)
    verbs = al.add_subparsers(dest="action", required=True, parser_class=Parser)
    ls = verbs.add_parser("list", parents=[hub_opts, out_opts], help="list export requests")
    ls.add_argument("--state", choices=STATES)
    ls.add_argument("--project", type=project_type)
    ls.set_defaults(func=cmd_list)
    sh = verbs.add_parser("show", parents=[hub_opts, out_opts], help="one request: files, hashes, checks, reviews")
    sh.add_argument("id", type=id_type)
    sh.set_defaults(func=cmd_show)
    for verb in REVIEW_VERBS:
        v = verbs.add_parser(verb, parents=[hub_opts], help=f"{verb} a request (a checker's token)")
        v.add_argument("id", type=id_type)
        v.add_argument(
            "--comment",
            required=verb in ("reject", "return"),
            help="why (recorded; shown to the requester)",
        )
        v.set_defaults(func=cmd_review, verb=verb)
    dl = verbs.add_parser("download", parents=[hub_opts], help="download a released request's files")
    dl.add_argument("id", type=id_type)
    dl.add_argument("--output", help="folder to write into (default: the current folder); nothing is overwritten")
    dl.set_defaults(func=cmd_download)
    ck = verbs.add_parser("checker", help="name or remove output checkers").add_subparsers(
        dest="verb", required=True, parser_class=Parser
    )
    for verb in ("add", "remove"):
        c = ck.add_parser(verb, parents=[hub_opts], help=f"{verb} an output checker")
        c.add_argument("user", type=user_type)
        c.set_defaults(func=cmd_checker)
