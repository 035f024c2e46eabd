"""Docker's exec API: `POST /containers/{id}/exec`, `POST /exec/{id}/start`, `/json`, `/resize`.

Start hijacks the connection as dockerd does: the exec's output as
multiplexed frames (raw bytes when the start asks for a TTY), the client's
bytes to its stdin (half-closed at the client's EOF). A start that fails
once the stream is open (command not found, ...) is written into the
stream as Docker writes it; its exit code (127, 126) is the exec's, which
the client reads from `GET /exec/{id}/json` after the stream ends. The
stream ends only once the exit code is recorded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from supervisor.api.create_body import console_size
from supervisor.api.request import Request
from supervisor.api.responses import EmptyResponse, HijackResponse, JSONResponse, RawStream
from supervisor.api.router import Router
from supervisor.api.streams import RAW, frame
from supervisor.errors import CorralError, InvalidArgument
from supervisor.reactor.engine import Engine
from supervisor.reactor.exec_instances import ExecConfig, ExecInstance
from supervisor.reactor.execs import ExecCommand, ExecProcess, pump_output

_STREAM_IDS = {"stdout": 1, "stderr": 2}
_KINDS = {str: "a string", bool: "a boolean", list: "a list", dict: "an object"}


def _get(body: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise InvalidArgument(f"invalid {key}: expected {_KINDS.get(kind, kind.__name__)}, got {type(value).__name__}")
    return value


def _str_list(body: dict[str, Any], key: str) -> tuple[str, ...]:
    value = body.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"invalid {key}: expected a list of strings")
    return tuple(value)


def _object(body: Any, what: str) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidArgument(f"invalid {what} request: the body must be a JSON object")
    return body


def parse_exec_create(body: Any) -> ExecConfig:
    """Docker's ExecConfig, type-checked field by field; what corral cannot do is refused by name."""
    body = _object(body, "exec")
    argv = _str_list(body, "Cmd")
    if not argv:
        raise InvalidArgument("No exec command specified")
    if _get(body, "Privileged", bool, False):
        raise InvalidArgument("Privileged is not supported by corral yet")
    if _get(body, "DetachKeys", str, ""):
        raise InvalidArgument("DetachKeys is not supported by corral yet")
    workdir = _get(body, "WorkingDir", str, "")
    if workdir and not workdir.startswith("/"):
        raise InvalidArgument(f"invalid WorkingDir {workdir!r}: the working directory must be an absolute path")
    _get(body, "Detach", bool, False)  # sent by the CLI; it matters only at start
    tty = _get(body, "Tty", bool, False)
    attach_stdin = _get(body, "AttachStdin", bool, False)
    command = ExecCommand(
        argv=argv,
        env=_str_list(body, "Env"),
        user=_get(body, "User", str, ""),
        workdir=workdir,
        tty=tty,
        stdin=attach_stdin,
    )
    return ExecConfig(
        command=command,
        attach_stdin=attach_stdin,
        attach_stdout=_get(body, "AttachStdout", bool, False),
        attach_stderr=_get(body, "AttachStderr", bool, False),
        console_size=console_size(body),
    )


def parse_exec_start(body: Any) -> tuple[bool, bool, tuple[int, int] | None]:
    """(Detach, Tty, ConsoleSize) of a start; Tty here decides the framing, as in dockerd."""
    body = _object(body, "exec start")
    return _get(body, "Detach", bool, False), _get(body, "Tty", bool, False), console_size(body)


def exec_json(instance: ExecInstance) -> dict[str, Any]:
    command = instance.command
    process_config: dict[str, Any] = {
        "tty": command.tty,
        "entrypoint": command.argv[0],
        "arguments": list(command.argv[1:]),
        "privileged": False,
    }
    if command.user:
        process_config["user"] = command.user
    return {
        "ID": instance.id,
        "Running": instance.running,
        "ExitCode": instance.exit_code,
        "ProcessConfig": process_config,
        "OpenStdin": instance.config.attach_stdin,
        "OpenStderr": instance.config.attach_stderr,
        "OpenStdout": instance.config.attach_stdout,
        "CanRemove": False,
        "ContainerID": instance.container.id,
        "DetachKeys": "",
        "Pid": instance.pid,
    }


async def _relay_stdin(raw: RawStream, process: ExecProcess) -> None:
    """Client bytes to the exec's stdin pipe or pty; the pipe is closed at the client's EOF."""
    target = process.pty if process.pty is not None else process.stdin
    if target is None:
        return
    while data := await raw.receive_some():
        try:
            await target.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
    if process.stdin is not None:
        process.stdin.close()


def _stream(
    engine: Engine, instance: ExecInstance, raw_output: bool, console_size: tuple[int, int] | None
) -> Callable[[RawStream], Awaitable[None]]:
    config = instance.config
    wanted = {"stdout": config.attach_stdout, "stderr": config.attach_stderr}

    async def relay(raw: RawStream) -> None:
        try:
            process = await engine.start_exec(instance.id, detach=False, console_size=console_size)
        except CorralError as err:
            # dockerd's words go to the client's stdout; the exec's exit code tells the rest.
            message = f"{err}\r\n".encode()
            await raw.send_all(message if raw_output else frame(1, message))
            await raw.send_eof()
            return

        async def deliver(stream: str, chunk: bytes) -> None:
            if wanted[stream]:
                await raw.send_all(chunk if raw_output else frame(_STREAM_IDS[stream], chunk))

        try:
            async with trio.open_nursery() as nursery:
                if config.attach_stdin:
                    nursery.start_soon(_relay_stdin, raw, process)
                await pump_output(process, deliver)
                # The client asks for the exit code as soon as the stream ends: record it first.
                await instance.done.wait()
                await raw.send_eof()
                nursery.cancel_scope.cancel()
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            # The client went away. As under Docker the process goes on, now without its stdio.
            pass
        finally:
            process.close_stdio()

    return relay


def register(router: Router, engine: Engine) -> None:
    async def create(request: Request) -> JSONResponse:
        instance = engine.create_exec(request.params["id"], parse_exec_create(request.json()))
        return JSONResponse({"Id": instance.id}, status=201)

    async def start(request: Request) -> EmptyResponse | HijackResponse:
        detach, tty, console_size = parse_exec_start(request.json())
        instance = engine.get_exec(request.params["id"])
        instance.check_startable()
        if detach:
            await engine.start_exec(instance.id, detach=True, console_size=console_size)
            return EmptyResponse(status=200)
        return HijackResponse(_stream(engine, instance, tty, console_size), content_type=RAW)

    async def inspect(request: Request) -> JSONResponse:
        return JSONResponse(exec_json(engine.get_exec(request.params["id"])))

    async def resize(request: Request) -> EmptyResponse:
        engine.resize_exec(request.params["id"], request.q_int("h", 0), request.q_int("w", 0))
        return EmptyResponse(status=200)

    router.route("POST", "/containers/{id}/exec", create)
    router.route("POST", "/exec/{id}/start", start)
    router.route("GET", "/exec/{id}/json", inspect)
    router.route("POST", "/exec/{id}/resize", resize)
