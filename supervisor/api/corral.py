"""corral's own routes (not Docker's): configs status, reload, and pointing the daemon at a directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supervisor.api.container_json import status_text
from supervisor.api.request import Request
from supervisor.api.responses import JSONResponse
from supervisor.api.router import Router
from supervisor.errors import InvalidArgument, NotFound
from supervisor.reactor.engine import Engine
from supervisor.reactor.reconcile import Reconciler


def _container_status(reconciler: Reconciler, name: str, source: str) -> dict[str, Any]:
    engine = reconciler.engine
    container = engine.registry.by_name(name)
    pending = reconciler.pending.get(name)
    entry: dict[str, Any] = {
        "Name": name,
        "Source": source,
        "Desired": "running",
        "State": container.state.status if container else "absent",
        "Status": status_text(container) if container else "",
        "Health": container.state.health.status if container and container.state.health else "",
        "RestartCount": container.state.restart_count if container else 0,
        "ExitCode": container.state.exit_code if container else None,
        "Id": container.id if container else "",
        "Pending": "",
        "Error": reconciler.apply_errors.get(name, "") or (container.state.error if container else ""),
    }
    if pending is not None:
        waits = ", ".join(f"{d.name} ({d.condition})" for d in pending.waiting_for)
        entry["Pending"] = f"waiting for {waits}" if waits else "being applied"
    return entry


def status_json(reconciler: Reconciler) -> dict[str, Any]:
    config_set = reconciler.config_set
    containers = []
    files = []
    if config_set is not None:
        for container in config_set.containers:
            source = f"{container.source.path}:{container.source.line}"
            containers.append(_container_status(reconciler, container.name, source))
        for held in sorted(config_set.held):
            entry = _container_status(reconciler, held, "")
            entry["Desired"] = "held (its config has errors)"
            containers.append(entry)
        for result in config_set.files:
            files.append(
                {
                    "Path": str(result.path),
                    "Containers": list(result.declared),
                    "Errors": [str(e) for e in config_set.errors_for(result.path)],
                }
            )
    return {
        "Directory": str(reconciler.directory),
        "Passes": reconciler.passes,
        "LoadError": reconciler.load_error,
        "Files": files,
        "Errors": [str(e) for e in config_set.errors] if config_set else [],
        "Containers": containers,
    }


def register(router: Router, engine: Engine) -> None:
    def reconciler() -> Reconciler:
        if engine.reconciler is None:
            raise NotFound("this daemon runs no configs directory (start it with --configs DIR, or `corral up DIR`)")
        return engine.reconciler

    async def status(_request: Request) -> JSONResponse:
        return JSONResponse(status_json(reconciler()))

    async def reload(_request: Request) -> JSONResponse:
        current = reconciler()
        await current.reconcile()
        return JSONResponse(status_json(current))

    async def use_directory(request: Request) -> JSONResponse:
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("Directory"), str):
            raise InvalidArgument('expected {"Directory": "/absolute/path"}')
        directory = Path(body["Directory"])
        if not directory.is_absolute() or not directory.is_dir():
            raise InvalidArgument(f"not an absolute path to a directory: {directory}")
        current = await engine.use_configs(directory)
        return JSONResponse(status_json(current))

    router.route("GET", "/corral/configs", status)
    router.route("POST", "/corral/configs/reload", reload)
    router.route("PUT", "/corral/configs", use_directory)
