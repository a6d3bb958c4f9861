"""The real tailnet's one entry point, for the tests, the bench and a person:

    python -m tests.realnet build                 # build (or find cached) every binary
    python -m tests.realnet start --dir DIR       # start everything; one JSON line when ready
    python -m tests.realnet nodes --dir DIR       # the nodes the control server knows
    python -m tests.realnet key --dir DIR [--tag TAG] [--single-use] [--expired] [--not-ephemeral]
    python -m tests.realnet stop --dir DIR        # end everything start started

Run from the repository's root. A missing Go, a failed build or a part that does not come up
fails with one line on stderr that says which, exit 1."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from tests.helpers import MARKER
from tests.realnet import build, stack


def _serve(folder: Path) -> int:
    import os

    marker = os.environ.get(MARKER, "")
    try:
        stack.serve(folder, marker)
    except BaseException as exc:  # pytest's skip of a missing server is a BaseException
        reason = str(exc).strip().splitlines()
        line = f"{type(exc).__name__}: {reason[0] if reason else ''}"
        if isinstance(exc, stack.StackError | build.BuildError):
            line = reason[0]
        traceback.print_exc()
        (folder / "failed").write_text(line + "\n")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.realnet",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build the binaries (cached per version)")
    for name in ("start", "stop", "nodes", "serve", "key"):
        p = sub.add_parser(name)
        p.add_argument("--dir", required=True, type=Path)
        if name == "key":
            p.add_argument("--tag", action="append", default=[])
            p.add_argument("--single-use", action="store_true")
            p.add_argument("--not-ephemeral", action="store_true")
            p.add_argument("--expired", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "build":
        return build.main()
    folder = args.dir.resolve()
    try:
        if args.command == "serve":
            return _serve(folder)
        if args.command == "start":
            print(json.dumps(stack.start(folder)), flush=True)
        elif args.command == "stop":
            killed = stack.stop(folder)
            if killed:
                print(
                    "realnet stop: killed what was left:\n  " + "\n  ".join(killed), file=sys.stderr
                )
                return 1
        elif args.command == "nodes":
            print(json.dumps(stack.headscale_of(folder).nodes()))
        elif args.command == "key":
            hs = stack.headscale_of(folder)
            created = hs.key(
                tags=args.tag or None,
                reusable=not args.single_use,
                ephemeral=not args.not_ephemeral,
            )
            if args.expired:
                hs.expire(int(created["id"]))
            print(json.dumps({"key": created["key"], "id": created["id"]}))
    except (stack.StackError, build.BuildError, OSError) as exc:
        print(f"realnet {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
