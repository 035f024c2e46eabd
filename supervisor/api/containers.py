"""The `/containers` routes of the Docker Engine API."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

from supervisor.api.container_json import inspect_json, list_json
from supervisor.api.create_body import parse_create_body
from supervisor.api.request import Request
from supervisor.api.responses import EmptyResponse, HijackResponse, JSONResponse, StreamResponse
from supervisor.api.router import Router
from supervisor.api.streams import attach_response, logs_response
from supervisor.errors import InvalidArgument
from supervisor.reactor.container import Container
from supervisor.reactor.engine import Engine
from supervisor.reactor.wait import parse_condition


def _filters(request: Request) -> dict[str, list[str]]:
    """Docker's `filters` JSON: {"status": ["exited"]}, or the legacy {"status": {"exited": true}}."""
    raw = request.q_json("filters") or {}
    if not isinstance(raw, dict):
        raise InvalidArgument("invalid filters: expected a JSON object")
    result: dict[str, list[str]] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            result[key] = [k for k, v in value.items() if v]
        elif isinstance(value, list):
            result[key] = [str(v) for v in value]
        else:
            raise InvalidArgument(f"invalid filter {key!r}")
    known = {"status", "name", "id", "label"}
    unknown = set(result) - known
    if unknown:
        raise InvalidArgument(f"invalid filter '{sorted(unknown)[0]}'")
    return result


def _matches(container: Container, filters: dict[str, list[str]]) -> bool:
    for value in filters.get("status", []):
        if container.state.status != value:
            return False
    names = filters.get("name", [])
    if names and not any(re.search(pattern, container.name) for pattern in names):
        return False
    ids = filters.get("id", [])
    if ids and not any(container.id.startswith(i) for i in ids):
        return False
    for label in filters.get("label", []):
        key, sep, value = label.partition("=")
        if key not in container.spec.labels or (sep and container.spec.labels[key] != value):
            return False
    return True


def _stop_timeout(request: Request) -> int | None:
    """`t` (or API ≥1.42's `timeout`) in seconds; absent: the container's own stop timeout."""
    timeout = request.q("t") or request.q("timeout")
    try:
        return int(timeout) if timeout else None
    except ValueError:
        raise InvalidArgument(f"invalid value for 't': {timeout!r}") from None


def register(router: Router, engine: Engine) -> None:
    async def create(request: Request) -> JSONResponse:
        spec = parse_create_body(request.json())
        container = await engine.create(spec, request.q("name") or None)
        return JSONResponse({"Id": container.id, "Warnings": []}, status=201)

    async def list_containers(request: Request) -> JSONResponse:
        show_all = request.q_bool("all")
        filters = _filters(request)
        if "status" in filters:
            show_all = True
        chosen = [list_json(c) for c in engine.containers() if (show_all or c.state.running) and _matches(c, filters)]
        limit = request.q_int("limit", -1)
        return JSONResponse(chosen[:limit] if limit > 0 else chosen)

    async def inspect(request: Request) -> JSONResponse:
        return JSONResponse(inspect_json(engine.get(request.params["id"])))

    async def start(request: Request) -> EmptyResponse:
        await engine.start(request.params["id"])
        return EmptyResponse()

    async def stop(request: Request) -> EmptyResponse:
        await engine.stop(request.params["id"], _stop_timeout(request), request.q("signal") or None)
        return EmptyResponse()

    async def restart(request: Request) -> EmptyResponse:
        await engine.restart(request.params["id"], _stop_timeout(request))
        return EmptyResponse()

    async def kill(request: Request) -> EmptyResponse:
        await engine.kill(request.params["id"], request.q("signal") or None)
        return EmptyResponse()

    async def wait(request: Request) -> StreamResponse:
        wait_for = engine.waiter(request.params["id"], parse_condition(request.q("condition")))

        async def body() -> AsyncIterator[bytes]:
            result = await wait_for()
            payload: dict[str, Any] = {"StatusCode": result.status_code, "Error": None}
            if result.error:
                payload["Error"] = {"Message": result.error}
            yield json.dumps(payload).encode() + b"\n"

        return StreamResponse(body, single=True)

    async def remove(request: Request) -> EmptyResponse:
        if request.q_bool("link"):
            raise InvalidArgument("links are not supported by corral")
        await engine.remove(request.params["id"], force=request.q_bool("force"), volumes=request.q_bool("v"))
        return EmptyResponse()

    async def logs(request: Request) -> StreamResponse:
        return logs_response(engine.get(request.params["id"]), request, engine.inotify)

    async def attach(request: Request) -> HijackResponse:
        return attach_response(engine.get(request.params["id"]), request, engine.inotify)

    async def stats(request: Request) -> StreamResponse:
        stream = request.q_bool("stream", True)
        samples = engine.stats(request.params["id"], stream=stream, one_shot=request.q_bool("one-shot"))

        async def body() -> AsyncIterator[bytes]:
            async for sample in samples:
                yield json.dumps(sample).encode() + b"\n"

        return StreamResponse(body, single=not stream)

    async def pause(request: Request) -> EmptyResponse:
        await engine.pause(request.params["id"])
        return EmptyResponse()

    async def unpause(request: Request) -> EmptyResponse:
        await engine.unpause(request.params["id"])
        return EmptyResponse()

    async def top(request: Request) -> JSONResponse:
        listed = await engine.top(request.params["id"], request.q("ps_args") or "")
        return JSONResponse({"Titles": listed.titles, "Processes": listed.processes})

    async def rename(request: Request) -> EmptyResponse:
        await engine.rename(request.params["id"], request.q("name") or "")
        return EmptyResponse()

    async def resize(request: Request) -> EmptyResponse:
        engine.resize(request.params["id"], request.q_int("h", 0), request.q_int("w", 0))
        return EmptyResponse(status=200)

    router.route("POST", "/containers/create", create)
    router.route("GET", "/containers/json", list_containers)
    router.route("GET", "/containers/{id}/json", inspect)
    router.route("POST", "/containers/{id}/start", start)
    router.route("POST", "/containers/{id}/stop", stop)
    router.route("POST", "/containers/{id}/kill", kill)
    router.route("POST", "/containers/{id}/rename", rename)
    router.route("GET", "/containers/{id}/top", top)
    router.route("POST", "/containers/{id}/pause", pause)
    router.route("POST", "/containers/{id}/unpause", unpause)
    router.route("GET", "/containers/{id}/stats", stats)
    router.route("POST", "/containers/{id}/restart", restart)
    router.route("POST", "/containers/{id}/wait", wait)
    router.route("DELETE", "/containers/{id}", remove)
    router.route("GET", "/containers/{id}/logs", logs)
    router.route("POST", "/containers/{id}/attach", attach)
    router.route("POST", "/containers/{id}/resize", resize)
