"""`docker save` and `docker load`: `GET /images/get`, `GET /images/{name}/get`, `POST /images/load`.

Save answers with the tar as it is produced (`application/x-tar`); names
are checked and every blob opened before the first byte, so a bad name is
a plain 404. `format=oci` (a corral extension; the docker CLI never sends
it) asks for an OCI archive instead of a docker-archive.

Load reads the request body as it arrives (the route streams it) into
`storage.archive_load`, and answers as dockerd does: 200 with JSON
messages, `{"stream": "Loaded image: busybox:latest\\n"}` per tag (or
`Loaded image ID: sha256:...` for an untagged image), and a failure as
`{"errorDetail": {...}, "error": ...}` in that stream, which both the docker
CLI and docker-py report as the load's error. The answer goes out after
the whole body has been read and the images committed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
import trio

from supervisor.api.request import Request
from supervisor.api.responses import StreamResponse, TextResponse
from supervisor.api.router import Router
from supervisor.errors import CorralError
from supervisor.reactor.engine import Engine
from supervisor.reactor.events import Event
from supervisor.storage.archive_load import LoadedImage, load_archive
from supervisor.storage.archive_save import SaveSession, select_images
from supervisor.storage.images import ImageStore

log = structlog.get_logger(__name__)

TAR = "application/x-tar"
_BATCH = 1 << 20


def register(router: Router, engine: Engine) -> None:
    async def save_many(request: Request) -> StreamResponse:
        return await _save(engine, request.q_list("names"), request.q("format") or "docker")

    async def save_one(request: Request) -> StreamResponse:
        return await _save(engine, [request.params["name"]], request.q("format") or "docker")

    async def load(request: Request) -> TextResponse:
        return await _load(engine, request)

    router.route("GET", "/images/get", save_many)
    router.route("GET", "/images/{name:path}/get", save_one)
    router.route("POST", "/images/load", load, stream_body=True)


async def _save(engine: Engine, names: list[str], fmt: str) -> StreamResponse:
    session = await trio.to_thread.run_sync(_open_session, engine.images, names, fmt)
    for saved in session.images:
        _publish(engine, "save", saved.image.id, saved.image.config)

    async def chunks() -> AsyncIterator[bytes]:
        produce = session.chunks()
        try:
            while (chunk := await trio.to_thread.run_sync(next, produce, None)) is not None:
                yield chunk
        finally:
            produce.close()  # quick: closes the blob files (also when the client went away)
            session.close()

    return StreamResponse(chunks, content_type=TAR)


def _open_session(store: ImageStore, names: list[str], fmt: str) -> SaveSession:
    return SaveSession(store, select_images(store, names), fmt)


async def _load(engine: Engine, request: Request) -> TextResponse:
    body = request.iter_body()

    async def next_chunk() -> bytes:
        # Up to ~1 MiB per trip: each one costs a thread round trip.
        parts: list[bytes] = []
        size = 0
        while size < _BATCH and (chunk := await anext(body, b"")):
            parts.append(chunk)
            size += len(chunk)
        return b"".join(parts)

    reader = BodyReader(lambda: trio.from_thread.run(next_chunk))
    try:
        loaded = await trio.to_thread.run_sync(_load_and_read_configs, engine.images, reader)
    except CorralError as err:
        log.warning("image.load_failed", error=str(err))
        return _messages([error_message(err)])
    for image, config in loaded:
        _publish(engine, "load", image.id, config)
    return _messages(load_messages([image for image, _config in loaded]))


def _load_and_read_configs(store: ImageStore, reader: BodyReader) -> list[tuple[LoadedImage, dict[str, Any]]]:
    return [(image, store.resolve(image.id).config) for image in load_archive(store, reader)]


def _publish(engine: Engine, action: str, image_id: str, config: dict[str, Any]) -> None:
    # Docker's image events: the image's labels, then its name (the ID for save and load).
    labels = (config.get("config") or {}).get("Labels") or {}
    attributes = {**{str(k): str(v) for k, v in labels.items()}, "name": image_id}
    engine.events.publish(Event("image", action, image_id, attributes))


def load_messages(loaded: list[LoadedImage]) -> list[dict[str, object]]:
    """dockerd's lines for a load: the tags each image took over, then what was loaded."""
    messages: list[dict[str, object]] = []
    for image in loaded:
        for tag, previous in image.replaced:
            messages.append(
                {"stream": f"The image {tag} already exists, renaming the old one with ID {previous} to empty string\n"}
            )
        for tag in image.tags:
            messages.append({"stream": f"Loaded image: {tag}\n"})
        if not image.tags:
            messages.append({"stream": f"Loaded image ID: {image.id}\n"})
    return messages


def error_message(err: CorralError) -> dict[str, object]:
    return {"errorDetail": {"code": err.status, "message": str(err)}, "error": str(err)}


def _messages(messages: list[dict[str, object]]) -> TextResponse:
    text = "".join(json.dumps(message, separators=(",", ":")) + "\n" for message in messages)
    return TextResponse(text, content_type="application/json")


class BodyReader:
    """A blocking `read(n)` over the request body, for a worker thread; each chunk is fetched from trio."""

    def __init__(self, fetch: Callable[[], bytes]) -> None:
        self._fetch = fetch
        self._buffer = b""
        self._done = False

    def read(self, n: int = -1, /) -> bytes:
        while not self._done and (n < 0 or len(self._buffer) < n):
            chunk = self._fetch()
            if not chunk:
                self._done = True
            self._buffer += chunk
            if n >= 0 and self._buffer:
                break
        if n < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data
