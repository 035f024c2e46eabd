"""Container events of one engine, collected by a background thread, waited for by the bench.

Docker-compatible engines (corral, dockerd): `GET /events` on the API
socket, Docker's JSON messages (`Action`, `timeNano`, `Actor`). podman:
`podman events --format json`, whose `Status` and `Time` say the same
(its `died` is Docker's `die`). The timestamps are the engine's own
(CLOCK_REALTIME when it published the event), so intervals between them,
and against the bench's `time.time_ns()`, need no delivery latency
correction.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import h11

from supervisor.timestamps import parse_rfc3339_ns


@dataclass(frozen=True)
class Ev:
    action: str  # Docker's spelling: "die", "start", "health_status: unhealthy", "exec_die", ...
    container: str  # full id
    time_ns: int
    attributes: Mapping[str, str] = field(default_factory=dict)


class EventLog:
    """Every event seen, in arrival order; threads wait on it for the one they need."""

    def __init__(self) -> None:
        self.events: list[Ev] = []
        self._cond = threading.Condition()
        self.error: str | None = None

    def add(self, event: Ev) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def fail(self, error: str) -> None:
        with self._cond:
            self.error = error
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Ev], bool], timeout: float) -> Ev | None:
        """The first event (oldest first) matching `predicate`, waiting up to `timeout` for it."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for event in self.events[seen:]:
                    if predicate(event):
                        return event
                seen = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0 or self.error is not None:
                    return None
                self._cond.wait(left)

    def of(self, container: str, since_ns: int = 0) -> list[Ev]:
        with self._cond:
            return [e for e in self.events if e.container == container and e.time_ns >= since_ns]

    def next(self, container: str, action: str, after_ns: int, timeout: float) -> Ev | None:
        def matches(e: Ev) -> bool:
            return e.container == container and e.action == action and e.time_ns > after_ns

        return self.wait_for(matches, timeout)


class DockerEvents:
    """`GET /events?filters={"type":["container"]}` on a Docker-compatible socket, read by a thread."""

    def __init__(self, socket_path: Path, api_version: str = "1.41") -> None:
        self.socket_path = socket_path
        self.api_version = api_version
        self.log = EventLog()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(self.socket_path))
        self._sock = sock
        filters = quote(json.dumps({"type": ["container"]}))
        conn = h11.Connection(h11.CLIENT)
        request = h11.Request(
            method="GET",
            target=f"/v{self.api_version}/events?filters={filters}",
            headers=[("Host", "bench"), ("User-Agent", "corral-bench")],
        )
        sock.sendall((conn.send(request) or b"") + (conn.send(h11.EndOfMessage()) or b""))
        self._thread = threading.Thread(target=self._read, args=(sock, conn), daemon=True, name="events")
        self._thread.start()
        # The engine subscribes before it sends the headers (both do): then nothing later is missed.
        if not self._ready.wait(10):
            raise RuntimeError(f"no answer to GET /events on {self.socket_path}")
        if self.log.error:
            raise RuntimeError(self.log.error)

    def _read(self, sock: socket.socket, conn: h11.Connection) -> None:
        buffer = b""
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    # b"" at EOF: h11 then returns ConnectionClosed or raises (mid-stream).
                    conn.receive_data(sock.recv(65536))
                    continue
                if isinstance(event, h11.Response):
                    if event.status_code != 200:
                        self.log.fail(f"GET /events answered {event.status_code}")
                    self._ready.set()
                elif isinstance(event, h11.Data):
                    buffer += bytes(event.data)
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip():
                            self._add(json.loads(line))
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    return
        except (OSError, h11.ProtocolError, ValueError) as err:
            if self._sock is not None:  # not closed on purpose
                self.log.fail(f"event stream broke: {err}")
        finally:
            self._ready.set()

    def _add(self, message: dict[str, Any]) -> None:
        actor = message.get("Actor") or {}
        self.log.add(
            Ev(
                action=str(message.get("Action") or message.get("status") or ""),
                container=str(actor.get("ID") or message.get("id") or ""),
                time_ns=int(message.get("timeNano") or int(message.get("time", 0)) * 1_000_000_000),
                attributes=dict(actor.get("Attributes") or {}),
            )
        )

    def stop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._thread is not None:
            self._thread.join(5)


# podman's event statuses in Docker's spelling.
_PODMAN_ACTIONS = {"died": "die", "exec_died": "exec_die"}


class PodmanEvents:
    """`podman events --format json --filter type=container`, read by a thread."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.argv = [*argv, "events", "--format", "json", "--filter", "type=container"]
        self.env = env
        self.log = EventLog()
        self._process: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            self.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        self._thread = threading.Thread(target=self._read, args=(self._process,), daemon=True, name="podman-events")
        self._thread.start()
        time.sleep(0.5)  # `podman events` opens and seeks the log before it follows it

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            status = str(message.get("Status", ""))
            if status == "health_status":
                status = f"health_status: {message.get('health_status', '')}"
            attributes = {k: str(v) for k, v in message.items() if k not in ("Attributes", "Time", "Status", "ID")}
            self.log.add(
                Ev(
                    action=_PODMAN_ACTIONS.get(status, status),
                    container=str(message.get("ID", "")),
                    time_ns=parse_rfc3339_ns(str(message.get("Time", ""))) or 0,
                    attributes=attributes,
                )
            )

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._thread is not None:
            self._thread.join(5)
