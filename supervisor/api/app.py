"""The daemon's API: every route, wired to one engine."""

from __future__ import annotations

from supervisor.api import archive, commit, containers, corral, events, execs, images, saveload, system, volumes
from supervisor.api.request import Request
from supervisor.api.responses import JSONResponse
from supervisor.api.router import Router
from supervisor.reactor.engine import Engine


def build_router(engine: Engine) -> Router:
    router = Router()
    router.route("GET", "/_ping", system.ping)
    router.route("GET", "/version", system.version)

    async def info(_request: Request) -> JSONResponse:
        return JSONResponse(system.info_json(engine))

    router.route("GET", "/info", info)
    containers.register(router, engine)
    commit.register(router, engine)
    archive.register(router, engine)
    images.register(router, engine)
    saveload.register(router, engine)
    events.register(router, engine)
    execs.register(router, engine)
    corral.register(router, engine)
    volumes.register(router, engine)
    return router
