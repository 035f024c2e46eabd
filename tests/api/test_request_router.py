"""Request helpers and route matching, without a socket."""

from __future__ import annotations

import pytest

from supervisor.api.http import EmptyResponse, Request, Router
from supervisor.api.router import split_version
from supervisor.errors import InvalidArgument


def make(query: dict[str, list[str]] | None = None, body: bytes = b"", **headers: str) -> Request:
    return Request(method="GET", path="/x", query=query or {}, body=body, headers=headers)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("True", True),
        ("yes", True),
        ("0", False),
        ("false", False),
        ("False", False),
        ("", False),
        ("none", False),
    ],
)
def test_q_bool_follows_docker(raw: str, expected: bool) -> None:
    assert make({"force": [raw]}).q_bool("force") is expected


def test_q_bool_default_when_absent() -> None:
    assert make().q_bool("force") is False
    assert make().q_bool("stream", default=True) is True


def test_q_and_q_list() -> None:
    req = make({"names": ["a", "b"], "tail": ["all"]})
    assert req.q("names") == "a"
    assert req.q_list("names") == ["a", "b"]
    assert req.q("missing") is None
    assert req.q("missing", "dflt") == "dflt"
    assert req.q_list("missing") == []


def test_q_int() -> None:
    assert make({"t": ["7"]}).q_int("t", 10) == 7
    assert make({"t": [""]}).q_int("t", 10) == 10
    assert make().q_int("t", 10) == 10
    with pytest.raises(InvalidArgument, match="'t'"):
        make({"t": ["soon"]}).q_int("t", 10)


def test_q_json() -> None:
    req = make({"filters": ['{"label":["a=b"]}'], "bad": ["{"]})
    assert req.q_json("filters") == {"label": ["a=b"]}
    assert req.q_json("missing") is None
    with pytest.raises(InvalidArgument, match="invalid JSON in 'bad'"):
        req.q_json("bad")


def test_json_body() -> None:
    assert make(body=b'{"Image": "busybox"}').json() == {"Image": "busybox"}
    assert make(body=b"").json() is None
    with pytest.raises(InvalidArgument, match="^invalid JSON: "):
        make(body=b"{nope").json()
    with pytest.raises(InvalidArgument, match="^invalid JSON: "):
        make(body=b"\xff\xfe").json()


def test_wants_upgrade_needs_both_headers() -> None:
    assert make(upgrade="tcp", connection="Upgrade").wants_upgrade
    assert make(upgrade="tcp", connection="keep-alive, upgrade").wants_upgrade
    assert not make(upgrade="tcp").wants_upgrade
    assert not make(connection="Upgrade").wants_upgrade


def test_split_version() -> None:
    assert split_version("/v1.41/containers/json") == ("/containers/json", "1.41")
    assert split_version("/_ping") == ("/_ping", None)
    assert split_version("/v1.41") == ("/v1.41", None)  # no route segment after it
    assert split_version("/volumes/v1.2") == ("/volumes/v1.2", None)


async def nothing(request: Request) -> EmptyResponse:
    return EmptyResponse()


def test_router_matching() -> None:
    router = Router()
    router.route("GET", "/containers/json", nothing)
    router.route("GET", "/containers/{id}/json", nothing)
    router.route("DELETE", "/images/{name:path}", nothing)
    router.route("GET", "/images/{name:path}/json", nothing)
    router.route("POST", "/containers/{id}", nothing)

    assert router.match("GET", "/containers/json").params == {}
    assert router.match("GET", "/containers/abc/json").params == {"id": "abc"}
    assert router.match("DELETE", "/images/user/app:v1").params == {"name": "user/app:v1"}
    assert router.match("GET", "/images/reg:5000/a/b:t/json").params == {"name": "reg:5000/a/b:t"}
    # Encoded slashes stay inside a single segment, then decode.
    assert router.match("GET", "/containers/a%2Fb/json").params == {"id": "a/b"}
    # Static path known for GET only, yet a dynamic POST route also fits.
    assert router.match("POST", "/containers/json").params == {"id": "json"}
    assert router.match("HEAD", "/containers/json").route is not None

    missing = router.match("GET", "/nope")
    assert missing.route is None and not missing.path_known
    wrong = router.match("PUT", "/containers/abc/json")
    assert wrong.route is None and wrong.path_known


def test_router_rejects_duplicates_and_relative_patterns() -> None:
    router = Router()
    router.route("GET", "/a/{x}", nothing)
    with pytest.raises(ValueError, match="duplicate"):
        router.route("get", "/a/{x}", nothing)
    with pytest.raises(ValueError, match="start with '/'"):
        router.route("GET", "a", nothing)
