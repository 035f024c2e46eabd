from __future__ import annotations

import pytest

from supervisor.errors import InvalidArgument
from supervisor.storage.reference import parse_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "domain", "path", "tag", "digest", "familiar", "familiar_with_tag"),
    [
        ("busybox", "docker.io", "library/busybox", "latest", None, "busybox", "busybox:latest"),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", None, "busybox", "busybox:1.36"),
        ("user/app", "docker.io", "user/app", "latest", None, "user/app", "user/app:latest"),
        (
            "docker.io/library/busybox:latest",
            "docker.io",
            "library/busybox",
            "latest",
            None,
            "busybox",
            "busybox:latest",
        ),
        (
            "index.docker.io/library/busybox",
            "docker.io",
            "library/busybox",
            "latest",
            None,
            "busybox",
            "busybox:latest",
        ),
        ("docker.io/busybox", "docker.io", "library/busybox", "latest", None, "busybox", "busybox:latest"),
        ("host:5000/user/app:v1", "host:5000", "user/app", "v1", None, "host:5000/user/app", "host:5000/user/app:v1"),
        ("localhost/x", "localhost", "x", "latest", None, "localhost/x", "localhost/x:latest"),
        ("localhost:5000/x:y", "localhost:5000", "x", "y", None, "localhost:5000/x", "localhost:5000/x:y"),
        (
            "example.com/a/b/c:T_1.x-y",
            "example.com",
            "a/b/c",
            "T_1.x-y",
            None,
            "example.com/a/b/c",
            "example.com/a/b/c:T_1.x-y",
        ),
        ("[::1]:5000/app", "[::1]:5000", "app", "latest", None, "[::1]:5000/app", "[::1]:5000/app:latest"),
        (
            "a_b-c__d/e.f---g",
            "docker.io",
            "a_b-c__d/e.f---g",
            "latest",
            None,
            "a_b-c__d/e.f---g",
            "a_b-c__d/e.f---g:latest",
        ),
        (f"busybox@{DIGEST}", "docker.io", "library/busybox", None, DIGEST, "busybox", f"busybox@{DIGEST}"),
        (f"busybox:1@{DIGEST}", "docker.io", "library/busybox", "1", DIGEST, "busybox", f"busybox:1@{DIGEST}"),
        (
            "library/busybox/sub",
            "docker.io",
            "library/busybox/sub",
            "latest",
            None,
            "library/busybox/sub",
            "library/busybox/sub:latest",
        ),
    ],
)
def test_good_references(
    text: str, domain: str, path: str, tag: str | None, digest: str | None, familiar: str, familiar_with_tag: str
) -> None:
    ref = parse_reference(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    assert ref.familiar == familiar
    assert ref.familiar_with_tag == familiar_with_tag
    assert parse_reference(ref.full) == ref
    assert parse_reference(ref.familiar_with_tag) == ref


def test_full_form() -> None:
    assert parse_reference("busybox").full == "docker.io/library/busybox:latest"
    assert parse_reference("host:5000/user/app:v1").full == "host:5000/user/app:v1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "repository name must have at least one component"),
        ("Busybox", "invalid reference format: repository name must be lowercase"),
        ("user/App:v1", "invalid reference format: repository name must be lowercase"),
        ("busybox:bad tag", "invalid tag"),
        ("busybox:-x", "invalid tag"),
        ("busybox:", "invalid tag"),
        ("busybox:" + "a" * 129, "invalid tag"),
        ("busybox@sha256:abc", "digest"),
        ("busybox@md5:" + "0" * 32, "unsupported digest"),
        ("-leading", "invalid repository name"),
        ("a//b", "invalid repository name"),
        ("user/", "invalid repository name"),
        ("bad_host.com/app", "invalid registry host"),
        ("a" * 256, "more than 255"),
        ("ab" * 32, "64-byte hexadecimal"),
    ],
)
def test_bad_references(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_reference(text)
