"""Docker's JSON for images: the list summary, `image inspect`, `history` entries.

Field for field and in Docker 20.10's order (API 1.41), checked against a
real dockerd on the same image. The image config's Docker-only fields
(`container`, `container_config`, `docker_version`, `comment`, `author`)
are shown when the config has them (images committed or imported by
Docker, or by corral's commit), as Docker does; `Config` and
`ContainerConfig` are rendered as Docker's container.Config struct, zero
values included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supervisor.reactor.image_list import ListedImage
from supervisor.storage.history import HistoryEntry
from supervisor.storage.images import Image
from supervisor.timestamps import ZERO_TIME, parse_rfc3339_ns

# container.Config's JSON fields in order, with their zero values; None marks `omitempty` fields.
_CONFIG_FIELDS: tuple[tuple[str, Any], ...] = (
    ("Hostname", ""),
    ("Domainname", ""),
    ("User", ""),
    ("AttachStdin", False),
    ("AttachStdout", False),
    ("AttachStderr", False),
    ("ExposedPorts", None),
    ("Tty", False),
    ("OpenStdin", False),
    ("StdinOnce", False),
    ("Env", [None]),
    ("Cmd", [None]),
    ("Healthcheck", None),
    ("ArgsEscaped", None),
    ("Image", ""),
    ("Volumes", [None]),
    ("WorkingDir", ""),
    ("Entrypoint", [None]),
    ("NetworkDisabled", None),
    ("MacAddress", None),
    ("OnBuild", [None]),
    ("Labels", [None]),
    ("StopSignal", None),
    ("StopTimeout", None),
    ("Shell", None),
)


def docker_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """A config as Docker's container.Config marshals it: all fields, zero values, omitempty ones if set."""
    config = config or {}
    out: dict[str, Any] = {}
    for name, zero in _CONFIG_FIELDS:
        value = config.get(name)
        if zero is None:
            if value:
                out[name] = value
        elif isinstance(zero, list):
            out[name] = value  # nil slices and maps: null
        else:
            out[name] = value if value is not None else zero
    return out


def created_seconds(image: Image) -> int:
    return (parse_rfc3339_ns(image.created) or 0) // 1_000_000_000


def labels_of(image: Image) -> dict[str, Any] | None:
    config = image.config.get("config")
    return None if config is None else config.get("Labels")


def image_list_json(listed: ListedImage) -> dict[str, Any]:
    image = listed.image
    return {
        "Containers": -1,
        "Created": created_seconds(image),
        "Id": image.id,
        "Labels": labels_of(image),
        "ParentId": image.parent,
        "RepoDigests": list(listed.repo_digests) if listed.repo_digests is not None else None,
        "RepoTags": list(listed.repo_tags) if listed.repo_tags is not None else None,
        "SharedSize": -1,
        "Size": image.size,
        "VirtualSize": image.size,
    }


def image_inspect_json(image: Image, layers_root: Path) -> dict[str, Any]:
    config = image.config
    inspect: dict[str, Any] = {
        "Id": image.id,
        "RepoTags": list(image.repo_tags),
        "RepoDigests": list(image.repo_digests),
        "Parent": image.parent,
        "Comment": config.get("comment", ""),
        "Created": image.created or ZERO_TIME,
        "Container": config.get("container", ""),
        "ContainerConfig": docker_config(config.get("container_config")),
        "DockerVersion": config.get("docker_version", ""),
        "Author": config.get("author", ""),
        "Config": docker_config(config["config"]) if config.get("config") is not None else None,
        "Architecture": config.get("architecture", ""),
    }
    if config.get("variant"):
        inspect["Variant"] = config["variant"]
    inspect["Os"] = config.get("os", "")
    if config.get("os.version"):
        inspect["OsVersion"] = config["os.version"]
    inspect.update(
        {
            "Size": image.size,
            "VirtualSize": image.size,
            "GraphDriver": {"Data": _graph_data(image, layers_root), "Name": "overlay"},
            "RootFS": {"Type": "layers", "Layers": list(image.diff_ids)},
            "Metadata": {"LastTagTime": image.last_tag_time or ZERO_TIME},
        }
    )
    return inspect


def history_json(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "Comment": entry.comment,
        "Created": entry.created,
        "CreatedBy": entry.created_by,
        "Id": entry.id,
        "Size": entry.size,
        "Tags": list(entry.tags) if entry.tags is not None else None,
    }


def _graph_data(image: Image, layers_root: Path) -> dict[str, str] | None:
    """The overlay lower dirs the image's layers are (top one as UpperDir, as Docker's overlay2 shows)."""
    dirs = [str(layers_root / diff_id.removeprefix("sha256:")) for diff_id in reversed(image.diff_ids)]
    if not dirs:
        return None
    data = {"UpperDir": dirs[0]}
    if len(dirs) > 1:
        data["LowerDir"] = ":".join(dirs[1:])
    return dict(sorted(data.items()))
