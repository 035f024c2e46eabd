"""The `/images` routes this stage has: list, inspect, and an honest refusal to pull."""

from __future__ import annotations

from typing import Any

from supervisor.api.request import Request
from supervisor.api.responses import JSONResponse
from supervisor.api.router import Router
from supervisor.errors import NotFound
from supervisor.reactor.engine import Engine
from supervisor.storage.images import Image
from supervisor.timestamps import parse_rfc3339_ns


def _created_seconds(image: Image) -> int:
    return (parse_rfc3339_ns(image.created) or 0) // 1_000_000_000


def image_list_json(image: Image) -> dict[str, Any]:
    return {
        "Id": image.id,
        "ParentId": "",
        "RepoTags": list(image.repo_tags) or ["<none>:<none>"],
        "RepoDigests": list(image.repo_digests),
        "Created": _created_seconds(image),
        "Size": image.size,
        "VirtualSize": image.size,
        "SharedSize": -1,
        "Labels": (image.config.get("config") or {}).get("Labels") or {},
        "Containers": -1,
    }


def image_inspect_json(image: Image) -> dict[str, Any]:
    config = image.config.get("config") or {}
    return {
        "Id": image.id,
        "RepoTags": list(image.repo_tags),
        "RepoDigests": list(image.repo_digests),
        "Parent": "",
        "Comment": "",
        "Created": image.created,
        "Container": "",
        "DockerVersion": "",
        "Author": image.config.get("author", ""),
        "Config": {
            "Env": config.get("Env"),
            "Cmd": config.get("Cmd"),
            "Entrypoint": config.get("Entrypoint"),
            "WorkingDir": config.get("WorkingDir", ""),
            "User": config.get("User", ""),
            "Labels": config.get("Labels"),
            "ExposedPorts": config.get("ExposedPorts"),
            "Volumes": config.get("Volumes"),
            "StopSignal": config.get("StopSignal"),
        },
        "Architecture": image.config.get("architecture", ""),
        "Os": image.config.get("os", "linux"),
        "Size": image.size,
        "VirtualSize": image.size,
        "GraphDriver": {"Name": "overlay", "Data": None},
        "RootFS": {"Type": "layers", "Layers": list(image.diff_ids)},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }


def register(router: Router, engine: Engine) -> None:
    async def list_images(request: Request) -> JSONResponse:
        return JSONResponse([image_list_json(i) for i in engine.images.list_images()])

    async def inspect(request: Request) -> JSONResponse:
        return JSONResponse(image_inspect_json(engine.images.resolve(request.params["name"])))

    async def pull(request: Request) -> JSONResponse:
        # Until corral has a registry client, a pull must fail at once and touch no network.
        name = request.q("fromImage") or request.q("fromSrc") or "?"
        tag = request.q("tag")
        ref = f"{name}:{tag}" if tag and not tag.startswith("sha256:") else name
        raise NotFound(
            f"pull access denied for {ref}: corral cannot pull from registries yet; "
            "only local images can run (`corral image bootstrap` creates busybox:latest offline)"
        )

    router.route("GET", "/images/json", list_images)
    router.route("GET", "/images/{name:path}/json", inspect)
    router.route("POST", "/images/create", pull)
