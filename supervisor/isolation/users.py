"""Resolving `--user` against the image's /etc/passwd and /etc/group (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from supervisor.errors import InvalidArgument


@dataclass(frozen=True)
class ExecUser:
    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    home: str


@dataclass(frozen=True)
class _PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class _GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


def _passwd_entries(text: str) -> list[_PasswdEntry]:
    entries = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) < 7 or line.startswith("#"):
            continue
        try:
            entries.append(_PasswdEntry(fields[0], int(fields[2]), int(fields[3]), fields[5]))
        except ValueError:
            continue
    return entries


def _group_entries(text: str) -> list[_GroupEntry]:
    entries = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) < 4 or line.startswith("#"):
            continue
        try:
            members = tuple(m for m in fields[3].split(",") if m)
            entries.append(_GroupEntry(fields[0], int(fields[2]), members))
        except ValueError:
            continue
    return entries


def resolve_user(spec: str, passwd: str, group: str) -> ExecUser:
    """`uid`, `name`, `uid:gid`, `name:group` -> ids, as runc's user lookup does.

    A numeric uid missing from passwd is allowed (Docker allows it); a name
    must exist. Supplementary groups are the groups listing the user.
    """
    user_part, _, group_part = (spec or "0").partition(":")
    users = _passwd_entries(passwd)
    groups = _group_entries(group)

    entry: _PasswdEntry | None = None
    if user_part.isdigit():
        uid = int(user_part)
        entry = next((u for u in users if u.uid == uid), None)
        gid = entry.gid if entry else 0
        home = entry.home if entry else "/"
    else:
        entry = next((u for u in users if u.name == user_part), None)
        if entry is None:
            raise InvalidArgument(f"unable to find user {user_part}: no matching entries in passwd file")
        uid, gid, home = entry.uid, entry.gid, entry.home

    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            match = next((g for g in groups if g.name == group_part), None)
            if match is None:
                raise InvalidArgument(f"unable to find group {group_part}: no matching entries in group file")
            gid = match.gid
        additional: tuple[int, ...] = ()
    else:
        name = entry.name if entry else None
        additional = tuple(sorted({g.gid for g in groups if name is not None and name in g.members} - {gid}))
    return ExecUser(uid=uid, gid=gid, additional_gids=additional, home=home or "/")
