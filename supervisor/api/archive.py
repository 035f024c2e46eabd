"""`/containers/{id}/archive` (docker cp both ways) and `/containers/{id}/export`."""

from __future__ import annotations

from supervisor.api.request import Request
from supervisor.api.responses import EmptyResponse, StreamResponse
from supervisor.api.router import Router
from supervisor.errors import InvalidArgument
from supervisor.reactor.archive import (
    archive_container_path,
    export_container,
    extract_to_container,
    stat_container_path,
)
from supervisor.reactor.engine import Engine

PATH_STAT_HEADER = "X-Docker-Container-Path-Stat"
TAR = "application/x-tar"


def _path(request: Request) -> str:
    path = request.q("path")
    if not path:
        raise InvalidArgument("bad parameter: path cannot be empty")
    return path


def register(router: Router, engine: Engine) -> None:
    async def head(request: Request) -> EmptyResponse:
        found = await stat_container_path(engine, request.params["id"], _path(request))
        return EmptyResponse(status=200, headers=[(PATH_STAT_HEADER, found.header_value())])

    async def get(request: Request) -> StreamResponse:
        found, chunks = await archive_container_path(engine, request.params["id"], _path(request))
        return StreamResponse(chunks, content_type=TAR, headers=[(PATH_STAT_HEADER, found.header_value())])

    async def put(request: Request) -> EmptyResponse:
        # moby: overwriting a directory with a file (or the reverse) is allowed unless the
        # client sends noOverwriteDirNonDir=true, as the docker CLI always does.
        await extract_to_container(
            engine,
            request.params["id"],
            _path(request),
            request.iter_body(),
            copy_uid_gid=request.q_bool("copyUIDGID"),
            no_overwrite_dir_non_dir=request.q_bool("noOverwriteDirNonDir"),
        )
        return EmptyResponse(status=200)

    async def export(request: Request) -> StreamResponse:
        return StreamResponse(export_container(engine, request.params["id"]), content_type=TAR)

    router.route("HEAD", "/containers/{id}/archive", head)
    router.route("GET", "/containers/{id}/archive", get)
    router.route("PUT", "/containers/{id}/archive", put, stream_body=True)
    router.route("GET", "/containers/{id}/export", export)
