"""`logs` and `attach`: container output as Docker's multiplexed frames or raw TTY bytes.

Both read the container's log file through the reactor (the one source
of truth); attach also relays the client's stdin to the container.
"""

from __future__ import annotations

import os
import struct
from collections.abc import AsyncIterator

import structlog
import trio

from supervisor.api.request import Request
from supervisor.api.responses import HijackResponse, RawStream, StreamResponse
from supervisor.errors import InvalidArgument
from supervisor.reactor.container import Container
from supervisor.reactor.inotify import InotifyHub
from supervisor.reactor.logs import LogQuery, LogRecord, stream_log
from supervisor.timestamps import parse_rfc3339_ns

log = structlog.get_logger(__name__)

MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
RAW = "application/vnd.docker.raw-stream"
_STREAM_IDS = {"stdout": 1, "stderr": 2}


def frame(stream_id: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxI", stream_id, len(payload)) + payload


def encode_record(record: LogRecord, *, tty: bool, timestamps: bool) -> bytes:
    payload = record.text.encode()
    if timestamps:
        payload = record.time.encode() + b" " + payload
    return payload if tty else frame(_STREAM_IDS.get(record.stream, 1), payload)


def _time_param(request: Request, name: str) -> int | None:
    """Docker's since/until: Unix seconds with optional fraction, or RFC 3339."""
    value = request.q(name)
    if not value or value == "0":
        return None
    try:
        return int(float(value) * 1_000_000_000)
    except ValueError:
        pass
    ns = parse_rfc3339_ns(value)
    if ns is None:
        raise InvalidArgument(f"invalid value for {name!r}: {value!r}: expected a Unix time or RFC 3339 timestamp")
    return ns


def log_query(request: Request) -> LogQuery:
    tail_text = request.q("tail", "all") or "all"
    if tail_text == "all":
        tail = None
    else:
        try:
            tail = int(tail_text)
        except ValueError:
            raise InvalidArgument(f"invalid value for 'tail': {tail_text!r}") from None
        tail = None if tail < 0 else tail
    return LogQuery(
        stdout=request.q_bool("stdout"),
        stderr=request.q_bool("stderr"),
        tail=tail,
        since_ns=_time_param(request, "since"),
        until_ns=_time_param(request, "until"),
    )


def logs_response(container: Container, request: Request, inotify: InotifyHub) -> StreamResponse:
    query = log_query(request)
    if not (query.stdout or query.stderr):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    follow = request.q_bool("follow")
    timestamps = request.q_bool("timestamps")
    tty = container.spec.tty

    async def chunks() -> AsyncIterator[bytes]:
        async for record in stream_log(container, query, follow=follow, inotify=inotify):
            yield encode_record(record, tty=tty, timestamps=timestamps)

    return StreamResponse(chunks, content_type=RAW if tty else MULTIPLEXED)


async def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(fd)
            continue
        view = view[written:]


async def _relay_stdin(raw: RawStream, container: Container, exits: int) -> None:
    """Client bytes to the container's stdin (pipe or pty), once it has one."""
    await container.wait_until(lambda c: c.process is not None or c.exit_count > exits or c.removed)
    while True:
        data = await raw.receive_some()
        process = container.process
        if process is None:
            return
        target = process.pty_fd if process.pty_fd is not None else process.stdin_fd
        if target is None:
            if not data:
                return
            continue
        if not data:
            if process.stdin_fd is not None and container.spec.stdin_once:
                os.close(process.stdin_fd)
                process.stdin_fd = None
            return
        os.set_blocking(target, False)
        try:
            await _write_all(target, data)
        except OSError as err:
            log.info("attach.stdin_closed", id=container.id, error=str(err))
            return


def attach_response(container: Container, request: Request, inotify: InotifyHub) -> HijackResponse:
    want_stdin = request.q_bool("stdin")
    query = LogQuery(stdout=request.q_bool("stdout"), stderr=request.q_bool("stderr"))
    stream = request.q_bool("stream")
    replay = request.q_bool("logs")
    tty = container.spec.tty
    # Pinned now: the stream ends at the exit after this attach, even if it attaches before start.
    exits = container.exit_count

    async def relay(raw: RawStream) -> None:
        async with trio.open_nursery() as nursery:
            if want_stdin and container.spec.open_stdin:
                nursery.start_soon(_relay_stdin, raw, container, exits)
            if query.stdout or query.stderr:
                async for record in stream_log(
                    container, query, follow=stream, inotify=inotify, from_end=not replay, until_exit_after=exits
                ):
                    await raw.send_all(encode_record(record, tty=tty, timestamps=False))
            elif stream:
                await container.wait_until(lambda c: c.exit_count > exits or c.removed)
            await raw.send_eof()
            nursery.cancel_scope.cancel()

    # dockerd answers API 1.41 hijacks with the raw-stream type whether or not frames follow.
    return HijackResponse(relay, content_type=RAW)
