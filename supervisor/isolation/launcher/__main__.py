"""`python -m supervisor.isolation.launcher --socket PATH [--ready-fd N]`: started by the daemon."""

from __future__ import annotations

import argparse
import os
import sys


def run() -> int:
    parser = argparse.ArgumentParser(prog="corral-launcher")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--ready-fd", type=int)
    parser.add_argument("--detach", action="store_true", help="fork so the launcher is never the daemon's child")
    args = parser.parse_args()
    if args.detach and os.fork() != 0:
        os._exit(0)
    from supervisor.isolation.launcher.server import main

    return main(args.socket, args.ready_fd)


if __name__ == "__main__":
    sys.exit(run())
