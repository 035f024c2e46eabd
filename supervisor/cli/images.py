"""Image commands: `images`, and `image bootstrap` which works on the state root directly."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from supervisor.cli.context import CliContext, CommandFailed
from supervisor.cli.output import human_ago, table
from supervisor.humanize import human_size


def cmd_images(ctx: CliContext, args: argparse.Namespace) -> int:
    with ctx.client() as client:
        response = client.request("GET", "/images/json", query={"all": args.all})
    if not response.ok:
        raise CommandFailed(f"Error response from daemon: {response.message}")
    images = response.json()
    if args.quiet:
        for image in images:
            print(image["Id"].removeprefix("sha256:")[:12])
        return 0
    now = time.time()
    rows = []
    for image in images:
        for tag in image["RepoTags"] or ["<none>:<none>"]:
            repository, _, name = tag.rpartition(":")
            rows.append(
                [
                    repository,
                    name,
                    image["Id"].removeprefix("sha256:")[:12],
                    human_ago(image["Created"], now),
                    human_size(image["Size"]),
                ]
            )
    table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], rows)
    return 0


def cmd_bootstrap(_ctx: CliContext, args: argparse.Namespace) -> int:
    # The store is disk-backed with file locks, so this is safe beside a running daemon.
    from supervisor.logs import configure
    from supervisor.storage.bootstrap import bootstrap_busybox
    from supervisor.storage.images import ImageStore

    configure(level="warning")

    store = ImageStore(Path(args.root))
    image = bootstrap_busybox(store, args.name)
    print(f"{args.name}: {image.id}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    images = commands.add_parser("images", help="list images")
    images.add_argument("-a", "--all", action="store_true", help="show all images")
    images.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    images.set_defaults(func=cmd_images)

    image = commands.add_parser("image", help="manage images")
    image_commands = image.add_subparsers(dest="image_command", required=True)
    ls = image_commands.add_parser("ls", help="list images")
    ls.add_argument("-a", "--all", action="store_true")
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.set_defaults(func=cmd_images)
    bootstrap = image_commands.add_parser(
        "bootstrap", help="create busybox:latest offline from the host's busybox-static"
    )
    bootstrap.add_argument("name", nargs="?", default="busybox:latest")
    bootstrap.add_argument("--root", default="/var/lib/corral", help="the daemon's state root")
    bootstrap.set_defaults(func=cmd_bootstrap)
