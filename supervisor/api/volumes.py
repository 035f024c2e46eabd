"""The `/volumes` routes: create, list, inspect, remove, prune (Docker's Volume shapes)."""

from __future__ import annotations

from typing import Any

from supervisor.api.events import parse_filters
from supervisor.api.request import Request
from supervisor.api.responses import EmptyResponse, JSONResponse
from supervisor.api.router import Router
from supervisor.errors import InvalidArgument
from supervisor.reactor.engine import Engine
from supervisor.storage.volumes import Volume

# Before API 1.42 a prune removed every unused volume; since, only anonymous ones unless `all`.
_PRUNE_ANONYMOUS_SINCE = (1, 42)


def volume_json(volume: Volume) -> dict[str, Any]:
    return {
        "CreatedAt": volume.created,
        "Driver": volume.driver,
        "Labels": dict(volume.labels),
        "Mountpoint": str(volume.mountpoint),
        "Name": volume.name,
        "Options": dict(volume.options),
        "Scope": "local",
    }


def _str_map(body: dict[str, Any], key: str) -> dict[str, str]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidArgument(f"invalid {key}: expected an object of strings")
    return dict(value)


def _str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(f"invalid {key}: expected a string")
    return value


def _version(text: str | None) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in text.split(".")) if text else None
    except ValueError:
        return None


def register(router: Router, engine: Engine) -> None:
    async def create(request: Request) -> JSONResponse:
        body = request.json() or {}
        if not isinstance(body, dict):
            raise InvalidArgument("invalid volume create request: the body must be a JSON object")
        if body.get("ClusterVolumeSpec") is not None:
            raise InvalidArgument("cluster volumes are not supported by corral")
        volume = await engine.volumes.create(
            name=_str(body, "Name"),
            labels=_str_map(body, "Labels"),
            driver=_str(body, "Driver"),
            options=_str_map(body, "DriverOpts"),
        )
        return JSONResponse(volume_json(volume), status=201)

    async def list_volumes(request: Request) -> JSONResponse:
        volumes = await engine.volumes.find(parse_filters(request.q_json("filters")))
        return JSONResponse({"Volumes": [volume_json(v) for v in volumes], "Warnings": []})

    async def inspect(request: Request) -> JSONResponse:
        return JSONResponse(volume_json(await engine.volumes.get(request.params["name"])))

    async def remove(request: Request) -> EmptyResponse:
        await engine.volumes.remove(request.params["name"], force=request.q_bool("force"))
        return EmptyResponse()

    async def prune(request: Request) -> JSONResponse:
        # No version prefix means the daemon's own, 1.41: the old semantics.
        version = _version(request.api_version) or (1, 41)
        deleted, reclaimed = await engine.volumes.prune(
            parse_filters(request.q_json("filters")), all_by_default=version < _PRUNE_ANONYMOUS_SINCE
        )
        return JSONResponse({"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed})

    router.route("POST", "/volumes/create", create)
    router.route("GET", "/volumes", list_volumes)
    router.route("POST", "/volumes/prune", prune)
    router.route("GET", "/volumes/{name}", inspect)
    router.route("DELETE", "/volumes/{name}", remove)
