"""Docker image references (`busybox`, `user/app:v1`, `host:5000/x@sha256:...`), normalized as Docker does."""

from __future__ import annotations

import re
from dataclasses import dataclass

from supervisor.errors import InvalidArgument
from supervisor.storage.digest import is_digest

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

# The grammar of github.com/distribution/reference (regexp.go).
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REMAINDER = re.compile(
    rf"^(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$",
    re.ASCII,
)
_DOMAIN_ONLY = re.compile(rf"^{_DOMAIN}$", re.ASCII)
_PATH = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_IMAGE_ID_HEX = re.compile(r"^[a-f0-9]{64}$")


@dataclass(frozen=True)
class Reference:
    """A normalized reference: `domain`/`path`, then a tag, a digest or both.

    A reference naming neither gets the tag `latest`, as `docker pull busybox` does.
    """

    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """The full repository name: `docker.io/library/busybox`."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar(self) -> str:
        """The repository as `docker images` shows it: `busybox`, `user/app`, `host:5000/user/app`."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        if self.path.startswith(OFFICIAL_REPO_PREFIX) and "/" not in self.path[len(OFFICIAL_REPO_PREFIX) :]:
            return self.path[len(OFFICIAL_REPO_PREFIX) :]
        return self.path

    @property
    def familiar_with_tag(self) -> str:
        """`busybox:latest`, or `busybox@sha256:...` for a digest-only reference."""
        return self.familiar + self._suffix

    @property
    def full(self) -> str:
        """`docker.io/library/busybox:latest`."""
        return self.name + self._suffix

    @property
    def _suffix(self) -> str:
        suffix = f":{self.tag}" if self.tag is not None else ""
        if self.digest is not None:
            suffix += f"@{self.digest}"
        return suffix

    def with_tag(self, tag: str) -> Reference:
        return parse_reference(f"{self.name}:{tag}")

    def __str__(self) -> str:
        return self.familiar_with_tag


def parse_reference(text: str) -> Reference:
    """Parse and normalize `text` as Docker's ParseNormalizedNamed + TagNameOnly; InvalidArgument if malformed."""
    if not text:
        raise InvalidArgument("invalid reference format: repository name must have at least one component")
    if _IMAGE_ID_HEX.match(text):
        raise InvalidArgument(f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_domain(text)
    remote_name = remainder.split("@", 1)[0].split(":", 1)[0]
    if remote_name.lower() != remote_name:
        raise InvalidArgument("invalid reference format: repository name must be lowercase")
    if not _DOMAIN_ONLY.match(domain):
        raise InvalidArgument(f"invalid reference format: invalid registry host {domain!r} in {text!r}")
    match = _REMAINDER.match(remainder)
    if match is None:
        raise InvalidArgument(_explain_invalid(text, remainder))
    path, tag, digest = match.group("path", "tag", "digest")
    if len(domain) + 1 + len(path) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidArgument(
            f"invalid reference format: repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    if digest is not None and not is_digest(digest):
        raise InvalidArgument(
            f"invalid reference format: unsupported digest {digest!r} (expected sha256: and 64 lowercase hex digits)"
        )
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def _split_domain(text: str) -> tuple[str, str]:
    """Docker's splitDockerDomain: the first component is a registry only if it looks like a host."""
    first, sep, rest = text.partition("/")
    if not sep or (not any(c in first for c in ".:") and first != "localhost" and first.lower() == first):
        domain, remainder = DEFAULT_DOMAIN, text
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder.split("@", 1)[0].split(":", 1)[0]:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def _explain_invalid(text: str, remainder: str) -> str:
    """The most specific reason we can name for a reference that failed the grammar."""
    repo, _, digest = remainder.partition("@")
    path, colon, tag = repo.partition(":")
    if not _PATH.match(path):
        return f"invalid reference format: invalid repository name in {text!r}"
    if colon and not re.fullmatch(_TAG, tag, re.ASCII):
        return f"invalid reference format: invalid tag {tag!r} in {text!r}"
    if digest:
        return f"invalid reference format: invalid digest {digest!r} in {text!r}"
    return f"invalid reference format: {text!r}"
