"""Image commands as the docker CLI has them: images, tag, rmi, history, image ls/inspect/rm/prune/history/tag.

`image bootstrap` works on the state root directly (no daemon needed).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from supervisor.cli.context import CliContext, CommandFailed, inspect_each
from supervisor.cli.output import human_ago, table
from supervisor.errors import InvalidArgument
from supervisor.storage.reference import parse_reference

_MISSING = "<missing>"
_CREATED_BY_WIDTH = 45
_SIZE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_size3(size: float) -> str:
    """go-units HumanSizeWithPrecision(size, 3), what `docker images` and `docker history` print."""
    index = 0
    while size >= 1000 and index < len(_SIZE_UNITS) - 1:
        size /= 1000
        index += 1
    return f"{size:.3g}{_SIZE_UNITS[index]}"


def short_id(image_id: str, no_trunc: bool) -> str:
    return image_id if no_trunc else image_id.removeprefix("sha256:")[:12]


def _filters(values: Sequence[str]) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise CommandFailed(
                f'invalid argument "{item}" for "-f, --filter" flag: bad format of filter (expected name=value)'
            )
        filters.setdefault(key.strip().lower(), []).append(value)
    return filters


def _request(ctx: CliContext, method: str, path: str, **kwargs: Any) -> Any:
    with ctx.client() as client:
        response = client.request(method, path, **kwargs)
    if not response.ok:
        raise CommandFailed(f"Error response from daemon: {response.message}")
    return response


def _rows(image: dict[str, Any], digests: bool) -> list[tuple[str, str, str]]:
    """(repository, tag, digest) rows for one image, as the docker CLI's image formatter makes them."""
    tags = image.get("RepoTags") or []
    repo_digests = image.get("RepoDigests") or []
    if tags == ["<none>:<none>"] and repo_digests in ([], ["<none>@<none>"]):
        return [("<none>", "<none>", "<none>")]
    by_repo_tags: dict[str, list[str]] = {}
    by_repo_digests: dict[str, list[str]] = {}
    for text in tags:
        ref = _parse(text)
        if ref is not None and ref.tag is not None:
            by_repo_tags.setdefault(ref.familiar, []).append(ref.tag)
    for text in repo_digests:
        ref = _parse(text)
        if ref is not None and ref.digest is not None:
            by_repo_digests.setdefault(ref.familiar, []).append(ref.digest)
    rows: list[tuple[str, str, str]] = []
    for repo, repo_tags in by_repo_tags.items():
        repo_digest_list = by_repo_digests.pop(repo, []) if digests else []
        by_repo_digests.pop(repo, None)
        for tag in repo_tags:
            rows.extend((repo, tag, digest) for digest in repo_digest_list or ["<none>"])
    for repo, repo_digest_list in by_repo_digests.items():
        if digests:
            rows.extend((repo, "<none>", d) for d in repo_digest_list)
        else:
            rows.append((repo, "<none>", ""))
    return rows


def _parse(text: str) -> Any:
    try:
        return parse_reference(text)
    except InvalidArgument:
        return None


def cmd_images(ctx: CliContext, args: argparse.Namespace) -> int:
    filters = _filters(args.filter)
    if args.repository:
        filters.setdefault("reference", []).append(args.repository)
    query: dict[str, Any] = {"all": args.all}
    if filters:
        query["filters"] = filters
    images = _request(ctx, "GET", "/images/json", query=query).json()
    now = time.time()
    rows = []
    for image in images:
        for repo, tag, digest in _rows(image, args.digests):
            image_id = short_id(image["Id"], args.no_trunc)
            if args.quiet:
                rows.append([image_id])
                continue
            created = human_ago(image["Created"], now)
            cells = [repo, tag, *([digest] if args.digests else []), image_id, created, human_size3(image["Size"])]
            rows.append(cells)
    if args.quiet:
        for row in rows:
            print(row[0])
        return 0
    headers = ["REPOSITORY", "TAG", *(["DIGEST"] if args.digests else []), "IMAGE ID", "CREATED", "SIZE"]
    table(headers, rows)
    return 0


def cmd_tag(ctx: CliContext, args: argparse.Namespace) -> int:
    try:
        target = parse_reference(args.target)
    except InvalidArgument as err:
        raise CommandFailed(f'Error parsing reference: "{args.target}" is not a valid repository/tag: {err}') from None
    _request(ctx, "POST", f"/images/{args.source}/tag", query={"repo": target.name, "tag": target.tag or ""})
    return 0


def cmd_rmi(ctx: CliContext, args: argparse.Namespace) -> int:
    failed = False
    query = {"force": args.force, "noprune": args.no_prune}
    for name in args.images:
        with ctx.client() as client:
            response = client.request("DELETE", f"/images/{name}", query=query)
        if not response.ok:
            sys.stderr.write(f"Error response from daemon: {response.message}\n")
            failed = True
            continue
        for record in response.json():
            for key in ("Untagged", "Deleted"):
                if record.get(key):
                    print(f"{key}: {record[key]}")
    return 1 if failed else 0


def cmd_inspect(ctx: CliContext, args: argparse.Namespace) -> int:
    return inspect_each(ctx, [f"/images/{name}/json" for name in args.images], error_prefix="Error")


def cmd_history(ctx: CliContext, args: argparse.Namespace) -> int:
    entries = _request(ctx, "GET", f"/images/{args.image}/history").json()
    if args.quiet:
        for entry in entries:
            print(short_id(entry["Id"], args.no_trunc))
        return 0
    now = time.time()
    rows = []
    for entry in entries:
        image_id = entry["Id"] if entry["Id"] == _MISSING else short_id(entry["Id"], args.no_trunc)
        created_by = entry["CreatedBy"].replace("\t", " ")
        if not args.no_trunc and len(created_by) > _CREATED_BY_WIDTH:
            created_by = created_by[: _CREATED_BY_WIDTH - 1] + "…"
        if args.human:
            created, size = human_ago(entry["Created"], now), human_size3(entry["Size"])
        else:
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry["Created"]))
            size = str(entry["Size"])
        rows.append([image_id, created, created_by, size, entry["Comment"]])
    table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], rows)
    return 0


def cmd_prune(ctx: CliContext, args: argparse.Namespace) -> int:
    filters = _filters(args.filter)
    if args.all:
        filters["dangling"] = ["false"]
    if not args.force:
        what = "all images without at least one container associated to them" if args.all else "all dangling images"
        sys.stdout.write(f"WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    report = _request(ctx, "POST", "/images/prune", query={"filters": filters} if filters else {}).json()
    records = report.get("ImagesDeleted") or []
    if records:
        print("Deleted Images:")
        for record in records:
            for key in ("Untagged", "Deleted"):
                if record.get(key):
                    print(f"{key.lower()}: {record[key]}")
        print()
    print(f"Total reclaimed space: {human_size3(report.get('SpaceReclaimed', 0))}")
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


def _bool_flag(text: str) -> bool:
    if text.lower() in ("1", "t", "true"):
        return True
    if text.lower() in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {text!r}")


def _add_list(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="show all images (default hides intermediate images)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    parser.add_argument("--digests", action="store_true", help="show digests")
    parser.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    parser.add_argument("-f", "--filter", action="append", default=[], help="filter output (dangling=true, ...)")
    parser.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")
    parser.set_defaults(func=cmd_images)


def _add_rmi(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--force", action="store_true", help="force removal of the image")
    parser.add_argument("--no-prune", action="store_true", help="do not delete untagged parents")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.set_defaults(func=cmd_rmi)


def _add_tag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    parser.add_argument("target", metavar="TARGET_IMAGE[:TAG]")
    parser.set_defaults(func=cmd_tag)


def _add_history(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-H", "--human", type=_bool_flag, default=True, help="human-readable sizes and dates")
    parser.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    parser.add_argument("image")
    parser.set_defaults(func=cmd_history)


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    _add_list(commands.add_parser("images", help="list images"))
    _add_tag(commands.add_parser("tag", help="create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"))
    _add_rmi(commands.add_parser("rmi", help="remove one or more images"))
    _add_history(commands.add_parser("history", help="show the history of an image"))

    image = commands.add_parser("image", help="manage images")
    image_commands = image.add_subparsers(dest="image_command", required=True)
    _add_list(image_commands.add_parser("ls", aliases=["list"], help="list images"))
    _add_tag(image_commands.add_parser("tag", help="create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"))
    _add_rmi(image_commands.add_parser("rm", aliases=["remove"], help="remove one or more images"))
    _add_history(image_commands.add_parser("history", help="show the history of an image"))
    inspect = image_commands.add_parser("inspect", help="display detailed information on one or more images")
    inspect.add_argument("images", nargs="+", metavar="IMAGE")
    inspect.set_defaults(func=cmd_inspect)
    prune = image_commands.add_parser("prune", help="remove unused images")
    prune.add_argument("-a", "--all", action="store_true", help="remove all unused images, not just dangling ones")
    prune.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    prune.add_argument("--filter", action="append", default=[], help="provide filter values (until=24h, label=...)")
    prune.set_defaults(func=cmd_prune)
    bootstrap = image_commands.add_parser(
        "bootstrap", help="create busybox:latest offline from the host's busybox-static"
    )
    bootstrap.add_argument("name", nargs="?", default="busybox:latest")
    bootstrap.add_argument("--root", default="/var/lib/corral", help="the daemon's state root")
    bootstrap.set_defaults(func=cmd_bootstrap)
