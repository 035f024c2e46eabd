"""The `/images` routes: list, inspect, history, tag, remove, prune, and an honest refusal to pull.

(`/images/get` and `/images/load` live in api/saveload.py, `/commit` with the containers.)
"""

from __future__ import annotations

import re
import time

import trio

from supervisor.api.commit import import_response
from supervisor.api.events import parse_event_time, parse_filters
from supervisor.api.image_json import history_json, image_inspect_json, image_list_json
from supervisor.api.request import Request
from supervisor.api.responses import EmptyResponse, JSONResponse, TextResponse
from supervisor.api.router import Router
from supervisor.errors import InvalidArgument, NotFound
from supervisor.reactor import image_list
from supervisor.reactor.engine import Engine
from supervisor.reactor.images import PruneFilter, delete_image, prune_images, tag_image
from supervisor.storage.history import image_history
from supervisor.storage.reference import parse_reference

PRUNE_FILTERS = frozenset({"dangling", "until", "label", "label!"})
_GO_DURATION = re.compile(r"^(?:(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def parse_prune_filter(raw: object) -> PruneFilter:
    """Docker's image prune filters: dangling (true/1, false/0), until, label, label!."""
    filters = parse_filters(raw)
    unknown = sorted(set(filters) - PRUNE_FILTERS)
    if unknown:
        raise InvalidArgument(f"Invalid filter '{unknown[0]}'")
    dangling = set(filters.get("dangling", ()))
    if dangling and dangling <= {"false", "0"}:
        dangling_only = False
    elif not dangling or dangling <= {"true", "1"}:
        dangling_only = True
    else:
        raise InvalidArgument(f"Invalid filter 'dangling=[{' '.join(sorted(dangling))}]'")
    until = filters.get("until", [])
    if len(until) > 1:
        raise InvalidArgument("more than one until filter specified")
    return PruneFilter(
        dangling_only=dangling_only,
        until_ns=_until_ns(until[0]) if until else None,
        labels=tuple(filters.get("label", ())),
        not_labels=tuple(filters.get("label!", ())),
    )


def _until_ns(value: str) -> int | None:
    """A timestamp (Unix seconds, RFC 3339) or a Go duration before now (`24h`, `90m`)."""
    if _GO_DURATION.match(value):
        ago = sum(int(float(number) * _UNIT_NS[unit]) for number, unit in _DURATION_PART.findall(value))
        return time.time_ns() - ago
    return parse_event_time(value, "until")


def register(router: Router, engine: Engine) -> None:
    async def list_images(request: Request) -> JSONResponse:
        filters = parse_filters(request.q_json("filters"))
        listed = await trio.to_thread.run_sync(
            lambda: image_list.list_images(engine.images, filters, all_images=request.q_bool("all"))
        )
        return JSONResponse([image_list_json(item) for item in listed])

    async def inspect(request: Request) -> JSONResponse:
        name = request.params["name"]
        try:
            image = await trio.to_thread.run_sync(engine.images.resolve, name)
        except NotFound as err:
            raise NotFound(f"no such image: {name}: {err}") from None
        return JSONResponse(image_inspect_json(image, engine.images.layers_root))

    async def history(request: Request) -> JSONResponse:
        def entries() -> list[dict[str, object]]:
            image = engine.images.resolve(request.params["name"])
            return [history_json(entry) for entry in image_history(engine.images, image)]

        return JSONResponse(await trio.to_thread.run_sync(entries))

    async def tag(request: Request) -> EmptyResponse:
        repo = request.q("repo") or ""
        if not repo:
            raise InvalidArgument("repository name must have at least one component")
        ref = parse_reference(repo)
        if ref.digest is not None:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        tag_text = request.q("tag") or ""
        target = ref.with_tag(tag_text) if tag_text else ref
        await tag_image(engine, request.params["name"], target.full)
        return EmptyResponse(status=201)

    async def remove(request: Request) -> JSONResponse:
        records = await delete_image(
            engine, request.params["name"], force=request.q_bool("force"), prune=not request.q_bool("noprune")
        )
        return JSONResponse(records)

    async def prune(request: Request) -> JSONResponse:
        report = await prune_images(engine, parse_prune_filter(request.q_json("filters")))
        return JSONResponse({"ImagesDeleted": report.records or None, "SpaceReclaimed": report.reclaimed})

    async def pull(request: Request) -> TextResponse:
        if request.q("fromSrc") is not None:
            return await import_response(engine, request)  # `docker import` (api/commit.py)
        # Until corral has a registry client, a pull must fail at once and touch no network.
        name = request.q("fromImage") or request.q("fromSrc") or "?"
        tag_param = request.q("tag")
        ref = f"{name}:{tag_param}" if tag_param and not tag_param.startswith("sha256:") else name
        raise NotFound(
            f"pull access denied for {ref}: corral cannot pull from registries yet; "
            "only local images can run (`corral image bootstrap` creates busybox:latest offline)"
        )

    router.route("GET", "/images/json", list_images)
    router.route("POST", "/images/prune", prune)
    router.route("POST", "/images/create", pull, stream_body=True)
    router.route("GET", "/images/{name:path}/json", inspect)
    router.route("GET", "/images/{name:path}/history", history)
    router.route("POST", "/images/{name:path}/tag", tag)
    router.route("DELETE", "/images/{name:path}", remove)
