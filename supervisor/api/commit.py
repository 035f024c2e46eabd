"""`POST /commit`, `GET /containers/{id}/changes`, and import (`POST /images/create?fromSrc=`).

As dockerd answers them: commit 201 `{"Id": "sha256:..."}` (query
`container`, `repo`, `tag`, `comment`, `author`, `pause` (default true),
`changes` repeated; the body, if any, a partial container Config that
takes precedence over the container's); changes 200 with `[{"Path",
"Kind"}]` sorted by path (`null` when there are none); import 200 with one
JSON message `{"status": "sha256:..."}` once the image is stored. A bad
reference or instruction is a 400 before anything is read or paused
(dockerd answers 500, and commits an untagged image first).
"""

from __future__ import annotations

import json
from typing import Any

from supervisor.api.request import Request
from supervisor.api.responses import JSONResponse, TextResponse
from supervisor.api.router import Router
from supervisor.errors import InvalidArgument, NotFound
from supervisor.reactor.commit import CommitOptions, ImportOptions, commit_container, diff_container, import_image
from supervisor.reactor.engine import Engine

_STRINGS = ("User", "WorkingDir", "StopSignal")
_STRING_LISTS = ("Cmd", "Entrypoint", "Env", "OnBuild", "Shell")
_OBJECTS = ("ExposedPorts", "Volumes", "Labels", "Healthcheck")


def register(router: Router, engine: Engine) -> None:
    async def changes(request: Request) -> JSONResponse:
        found = await diff_container(engine, request.params["id"])
        return JSONResponse([{"Path": change.path, "Kind": int(change.kind)} for change in found] or None)

    async def commit(request: Request) -> JSONResponse:
        container = request.q("container") or ""
        if not container:
            raise NotFound("No such container: ")
        pause = request.q("pause")
        options = CommitOptions(
            repo=request.q("repo") or "",
            tag=request.q("tag") or "",
            author=request.q("author") or "",
            comment=request.q("comment") or "",
            pause=True if pause in (None, "") else request.q_bool("pause"),
            changes=tuple(request.q_list("changes")),
            config=request_config(request.json()),
        )
        image = await commit_container(engine, container, options)
        return JSONResponse({"Id": image.id}, status=201)

    router.route("POST", "/commit", commit)
    router.route("GET", "/containers/{id}/changes", changes)


async def import_response(engine: Engine, request: Request) -> TextResponse:
    """`POST /images/create?fromSrc=-`: the body is the tarball (routed with stream_body)."""
    source = request.q("fromSrc") or ""
    if source != "-":
        raise InvalidArgument(
            f"importing from {source!r} is not supported: corral does not download; send the tarball as the "
            "request body (fromSrc=-), e.g. `curl -L URL | corral import - NAME`"
        )
    options = ImportOptions(
        repo=request.q("repo") or "",
        tag=request.q("tag") or "",
        message=request.q("message") or "",
        changes=tuple(request.q_list("changes")),
        source=source,
    )
    image = await import_image(engine, request.iter_body(), options)
    return TextResponse(json.dumps({"status": image.id}) + "\r\n", content_type="application/json")


def request_config(body: Any) -> dict[str, Any] | None:
    """The commit body, checked field by field for the keys an image config takes; others are ignored
    (Hostname, Tty, ... are a container's, and Docker drops them from images built on the config too)."""
    if body is None:
        return None
    if not isinstance(body, dict):
        raise InvalidArgument("invalid commit config: expected a JSON object")
    config: dict[str, Any] = {}
    for key, value in body.items():
        if value is None:
            continue
        if key in _STRINGS:
            if not isinstance(value, str):
                raise InvalidArgument(f"invalid commit config: {key} must be a string")
        elif key in _STRING_LISTS:
            if isinstance(value, str) and key in ("Cmd", "Entrypoint"):
                value = [value]  # Docker's StrSlice takes a lone string too
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                raise InvalidArgument(f"invalid commit config: {key} must be a list of strings")
        elif key in _OBJECTS:
            if not isinstance(value, dict):
                raise InvalidArgument(f"invalid commit config: {key} must be an object")
            if key == "Labels" and not all(isinstance(item, str) for item in value.values()):
                raise InvalidArgument("invalid commit config: Labels values must be strings")
        else:
            continue
        config[key] = value
    return config
