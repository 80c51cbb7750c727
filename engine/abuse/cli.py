"""``dragonpbx bans list|lift``: see and lift password-guessing bans in Redis (REDIS_URL).

The bans are shared by every engine instance through Redis, so lifting one here
takes effect everywhere at once; no daemon needs to be running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from engine.abuse.policy import canonical_source, is_ip
from engine.errors import StoreError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``bans`` command group to the main CLI's subparsers."""
    bans = subparsers.add_parser(
        "bans", help="list or lift password-guessing bans (in Redis)",
        description="Bans set by the abuse protection (README \"Abuse protection\"), read "
                    "from and removed in the Redis at REDIS_URL.")
    cmds = bans.add_subparsers(dest="bans_command", metavar="COMMAND", required=True)
    show = cmds.add_parser("list", help="every ban with its source, user and seconds left",
                           description="Print every ban: scope (source = all users, "
                                       "pair = one user), source, user@domain, failures "
                                       "counted, when it began and seconds left.")
    show.add_argument("--json", action="store_true", help="one JSON object per line")
    show.set_defaults(func=cmd_bans_list)
    lift = cmds.add_parser("lift", help="lift every ban of a source address",
                           description="Remove the source's ban, its per-user bans and its "
                                       "failure count. Exit 1 if it had none.")
    lift.add_argument("source", help="the banned IP address, e.g. 203.0.113.7")
    lift.set_defaults(func=cmd_bans_lift)


def _run(settings: Any, work: Any) -> Any:
    from engine.abuse.redis import RedisAbuseCounters
    from engine.store.resp import RespClient

    async def main() -> Any:
        client = RespClient(settings.redis_url)
        try:
            return await work(RedisAbuseCounters(client))
        finally:
            await client.close()

    return asyncio.run(main())


def cmd_bans_list(args: argparse.Namespace, settings: Any) -> int:
    try:
        bans = _run(settings, lambda counters: counters.bans())
    except StoreError as exc:
        print(f"dragonpbx bans: Redis: {exc}", file=sys.stderr)
        return 2
    for ban in sorted(bans, key=lambda b: (b.source, b.domain, b.user)):
        if args.json:
            print(json.dumps({"scope": ban.scope, "source": ban.source, "user": ban.user,
                              "domain": ban.domain, "failures": ban.failures,
                              "since": ban.since, "seconds_left": ban.ttl}))
            continue
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ban.since))
        scope = "all users" if ban.scope == "source" else "this user only"
        print(f"{ban.source:39s} {scope:14s} {ban.user}@{ban.domain}: {ban.failures} "
              f"failures, since {since}, {ban.ttl}s left")
    if not args.json:
        print(f"{len(bans)} ban(s)", file=sys.stderr)
    return 0


def cmd_bans_lift(args: argparse.Namespace, settings: Any) -> int:
    if not is_ip(args.source):
        print(f"dragonpbx bans lift: {args.source!r} is not an IP address", file=sys.stderr)
        return 2
    source = canonical_source(args.source)
    try:
        lifted = _run(settings, lambda counters: counters.lift(source))
    except StoreError as exc:
        print(f"dragonpbx bans: Redis: {exc}", file=sys.stderr)
        return 2
    print(f"{source}: {lifted} ban(s) lifted")
    return 0 if lifted else 1
