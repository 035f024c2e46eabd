"""A Docker API stub that answers `docker run --rm IMAGE CMD` instantly: the docker CLI's own floor.

It speaks just enough HTTP/1.1 on a unix socket for the five requests the
CLI makes (ping, create, attach, wait, start): the container "exits" the
moment it is started, so `docker run` against it measures only the CLI
process and its round trips, which no daemon can make faster.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
from pathlib import Path

_API_VERSION = "1.41"


class _Container:
    def __init__(self) -> None:
        self.started = threading.Event()


class FakeDocker:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._containers: dict[str, _Container] = {}
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(64)
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, name="fake-docker", daemon=True)

    def __enter__(self) -> FakeDocker:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._closed = True
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=5)
        self.path.unlink(missing_ok=True)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _container(self, path: str) -> _Container:
        cid = path.split("/containers/", 1)[1].split("/", 1)[0]
        with self._lock:
            return self._containers.setdefault(cid, _Container())

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            try:
                while True:
                    while b"\r\n\r\n" not in buffer:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buffer += data
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    lines = head.decode("latin-1").split("\r\n")
                    method, target, _version = lines[0].split(" ", 2)
                    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
                    length = int(headers.get("content-length", "0") or 0)
                    if headers.get("transfer-encoding", "").lower() == "chunked":
                        buffer = self._skip_chunked(conn, buffer)
                    else:
                        while len(buffer) < length:
                            buffer += conn.recv(65536)
                        buffer = buffer[length:]
                    if not self._answer(conn, method, target.split("?", 1)[0]):
                        return
            except OSError:
                return

    @staticmethod
    def _skip_chunked(conn: socket.socket, buffer: bytes) -> bytes:
        while True:
            while b"\r\n" not in buffer:
                buffer += conn.recv(65536)
            size_line, buffer = buffer.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(buffer) < size + 2:
                buffer += conn.recv(65536)
            buffer = buffer[size + 2 :]
            if size == 0:
                return buffer

    def _answer(self, conn: socket.socket, method: str, path: str) -> bool:
        """Reply to one request; False when the connection is done (hijacked or closed)."""
        base_headers = f"Api-Version: {_API_VERSION}\r\nOstype: linux\r\nServer: fake-docker\r\n"
        if path.endswith("/_ping"):
            body = b"" if method == "HEAD" else b"OK"
            conn.sendall(
                f"HTTP/1.1 200 OK\r\n{base_headers}Content-Type: text/plain; charset=utf-8\r\n".encode()
                + b"Content-Length: 2\r\n\r\n"
                + body
            )
            return True
        if path.endswith("/containers/create"):
            cid = secrets.token_hex(32)
            with self._lock:
                self._containers[cid] = _Container()
            self._json(conn, 201, {"Id": cid, "Warnings": []}, base_headers)
            return True
        if path.endswith("/attach"):
            container = self._container(path)
            conn.sendall(
                f"HTTP/1.1 101 UPGRADED\r\n{base_headers}Content-Type: application/vnd.docker.raw-stream\r\n"
                "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n".encode()
            )
            container.started.wait(timeout=30)
            return False  # closing the hijacked stream is the container's EOF
        if path.endswith("/wait"):
            container = self._container(path)
            conn.sendall(
                f"HTTP/1.1 200 OK\r\n{base_headers}Content-Type: application/json\r\n".encode()
                + b"Transfer-Encoding: chunked\r\n\r\n"
            )
            container.started.wait(timeout=30)
            body = json.dumps({"StatusCode": 0, "Error": None}).encode() + b"\n"
            conn.sendall(f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
            return True
        if path.endswith("/start"):
            self._container(path).started.set()
            conn.sendall(f"HTTP/1.1 204 No Content\r\n{base_headers}\r\n".encode())
            return True
        self._json(conn, 404, {"message": f"fake-docker: {method} {path} not implemented"}, base_headers)
        return True

    @staticmethod
    def _json(conn: socket.socket, status: int, document: object, base_headers: str) -> None:
        body = json.dumps(document).encode()
        reason = {201: "Created", 404: "Not Found"}.get(status, "OK")
        conn.sendall(
            f"HTTP/1.1 {status} {reason}\r\n{base_headers}Content-Type: application/json\r\n".encode()
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
