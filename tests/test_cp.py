"""docker cp both ways, export, and their safety against a container's own symlinks (issue 4, Done-when 2)."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import CORRAL, DOCKER, Daemon, wait_for

from supervisor.storage.archive import PathStat
from supervisor.storage.extract import ArchiveError, ExtractOptions, extract_tar

needs_docker = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")
BUSYBOX_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
SECRET = "host secret, never to be read through a container\n"


# -- helpers -----------------------------------------------------------------


def make_tar(*members: tuple[str, str, str | bytes]) -> bytes:
    """(kind, name, data): kind is file (data = content), dir, symlink or hardlink (data = target)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for kind, name, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if kind == "file":
                content = data.encode() if isinstance(data, str) else data
                info.size, info.mode = len(content), 0o644
                archive.addfile(info, io.BytesIO(content))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, str(data)
            archive.addfile(info)
    return out.getvalue()


def tar_files(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return {member.name: member for member in archive.getmembers()}


def tar_content(data: bytes, name: str) -> str:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        extracted = archive.extractfile(name)
        assert extracted is not None
        return extracted.read().decode()


def put(daemon: Daemon, container: str, path: str, body: bytes, **query: Any) -> Any:
    return daemon.api("PUT", f"/containers/{container}/archive", query={"path": path, **query}, body=body)


def get(daemon: Daemon, container: str, path: str) -> Any:
    return daemon.api("GET", f"/containers/{container}/archive", query={"path": path})


def head(daemon: Daemon, container: str, path: str) -> Any:
    return daemon.api("HEAD", f"/containers/{container}/archive", query={"path": path})


def path_stat(response: Any) -> PathStat:
    return PathStat.from_header(response.headers["x-docker-container-path-stat"])


def tree_state(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every entry under `root`: (mode, mtime_ns, content) — to show nothing there changed."""
    state = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        content = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
        state[str(path)] = (st.st_mode, st.st_mtime_ns, content)
    return state


def run_detached(daemon: Daemon, name: str, *extra: str) -> None:
    created = daemon.api(
        "POST",
        "/containers/create",
        query={"name": name},
        json={"Image": "busybox", "Cmd": list(extra) or ["sleep", "1000"]},
    )
    assert created.ok, created.message
    started = daemon.api("POST", f"/containers/{name}/start")
    assert started.ok, started.message


def create_only(daemon: Daemon, name: str) -> None:
    created = daemon.api("POST", "/containers/create", query={"name": name}, json={"Image": "busybox", "Cmd": ["true"]})
    assert created.ok, created.message


def container_text(daemon: Daemon, container: str, path: str) -> str:
    response = get(daemon, container, path)
    assert response.ok, response.message
    return tar_content(response.body, os.path.basename(path))


def docker_ok(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    result = daemon.docker(*args)
    assert result.returncode == 0, result.stderr
    return result


# -- docker cp with the real docker CLI --------------------------------------


@needs_docker
def test_docker_cp_file_and_dir_both_ways_running(clean: Daemon, tmp_path: Path) -> None:
    run_detached(clean, "cpr")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a").write_text("alpha\n")
    (src / "sub" / "b").write_text("beta\n")
    (src / "a").chmod(0o640)
    os.symlink("a", src / "link")

    docker_ok(clean, "cp", str(src / "a"), "cpr:/tmp/a-copy")  # a new name
    docker_ok(clean, "cp", str(src), "cpr:/tmp/")  # into a directory
    docker_ok(clean, "cp", f"{src}/.", "cpr:/tmp/contents")  # `dir/.`: the contents, into a new dir
    found = clean.docker(
        "exec", "cpr", "sh", "-c", "cd /tmp && find . | sort && stat -c %a a-copy && readlink src/link"
    )
    assert found.stdout.split() == sorted(
        [".", "./a-copy", "./contents", "./contents/a", "./contents/link", "./contents/sub", "./contents/sub/b"]
        + ["./src", "./src/a", "./src/link", "./src/sub", "./src/sub/b"]
    ) + ["640", "a"]

    out = tmp_path / "out"
    out.mkdir()
    docker_ok(clean, "cp", "cpr:/tmp/src", str(out / "whole"))  # a new dir
    docker_ok(clean, "cp", "cpr:/tmp/contents/.", str(out))  # contents into an existing dir
    docker_ok(clean, "cp", "cpr:/tmp/a-copy", str(out / "file"))
    docker_ok(clean, "cp", "cpr:/etc/passwd", str(out))
    assert (out / "whole" / "sub" / "b").read_text() == "beta\n"
    assert os.readlink(out / "whole" / "link") == "a"
    assert (out / "a").read_text() == "alpha\n" and (out / "sub" / "b").read_text() == "beta\n"
    assert (out / "file").read_text() == "alpha\n" and (out / "file").stat().st_mode & 0o777 == 0o640
    assert (out / "passwd").read_text() == BUSYBOX_PASSWD


@needs_docker
@pytest.mark.parametrize("state", ["created", "exited"])
def test_docker_cp_into_and_out_of_a_stopped_container(clean: Daemon, tmp_path: Path, state: str) -> None:
    script = "cat /etc/in.txt 2>/dev/null; echo made-inside > /made; rm -f /etc/group"
    created = clean.api(
        "POST", "/containers/create", query={"name": "stopped"}, json={"Image": "busybox", "Cmd": ["sh", "-c", script]}
    )
    assert created.ok, created.message
    if state == "exited":
        docker_ok(clean, "start", "-a", "stopped")
        assert clean.inspect("stopped")["State"]["Status"] == "exited"
    (tmp_path / "in.txt").write_text("copied in\n")
    docker_ok(clean, "cp", str(tmp_path / "in.txt"), "stopped:/etc/")
    docker_ok(clean, "cp", "stopped:/etc/in.txt", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_text() == "copied in\n"
    if state == "exited":
        docker_ok(clean, "cp", "stopped:/made", str(tmp_path / "made"))
        assert (tmp_path / "made").read_text() == "made-inside\n"
        missing = clean.docker("cp", "stopped:/etc/group", str(tmp_path / "group"))
        assert missing.returncode == 1 and "Could not find the file /etc/group in container stopped" in missing.stderr
    # The copy went into the container's own layer: its process sees it once started.
    assert docker_ok(clean, "start", "-a", "stopped").stdout == "copied in\n"


@needs_docker
def test_docker_cp_errors(clean: Daemon, tmp_path: Path) -> None:
    run_detached(clean, "cperr")
    missing = clean.docker("cp", "cperr:/nope", str(tmp_path / "x"))
    assert missing.returncode == 1
    assert missing.stderr.strip() == "Error response from daemon: Could not find the file /nope in container cperr"
    (tmp_path / "dir").mkdir()
    over_file = clean.docker("cp", str(tmp_path / "dir"), "cperr:/etc/passwd")
    assert over_file.returncode == 1 and "cannot copy directory" in over_file.stderr
    no_parent = clean.docker("cp", str(tmp_path / "dir"), "cperr:/nowhere/dir")
    assert no_parent.returncode == 1 and "Could not find the file /nowhere" in no_parent.stderr
    assert container_text(clean, "cperr", "/etc/passwd") == BUSYBOX_PASSWD


def test_archive_api_errors(clean: Daemon) -> None:
    run_detached(clean, "apierr")
    assert head(clean, "apierr", "/nope").status == 404
    response = get(clean, "apierr", "/nope")
    assert response.status == 404 and response.message == "Could not find the file /nope in container apierr"
    assert get(clean, "nosuch", "/").status == 404
    assert get(clean, "apierr", "").message == "bad parameter: path cannot be empty"
    not_dir = put(clean, "apierr", "/etc/passwd", make_tar(("file", "x", "x")))
    assert not_dir.status == 400 and not_dir.message == "extraction point is not a directory"
    assert put(clean, "apierr", "/nope", make_tar(("file", "x", "x"))).status == 404
    # noOverwriteDirNonDir (what the docker CLI always sends): no type changes either way.
    dir_over_file = put(clean, "apierr", "/etc", make_tar(("dir", "passwd", "")), noOverwriteDirNonDir="true")
    assert dir_over_file.status == 400 and "cannot overwrite non-directory" in dir_over_file.message
    file_over_dir = put(clean, "apierr", "/", make_tar(("file", "tmp", "x")), noOverwriteDirNonDir="true")
    assert file_over_dir.status == 400 and "cannot overwrite directory" in file_over_dir.message
    assert container_text(clean, "apierr", "/etc/passwd") == BUSYBOX_PASSWD
    # Without it (docker-py's put_archive), Docker replaces.
    assert put(clean, "apierr", "/etc", make_tar(("dir", "group", ""))).ok
    assert path_stat(head(clean, "apierr", "/etc/group")).is_dir
    broken = put(clean, "apierr", "/tmp", b"this is not a tar archive" * 40)
    assert broken.status == 400 and "invalid tar archive" in broken.message
    escaping = put(clean, "apierr", "/tmp", make_tar(("file", "../escape", "x")))
    assert escaping.status == 400 and "escapes" in escaping.message


def test_stat_header_and_tar_shape(clean: Daemon) -> None:
    run_detached(clean, "shape")
    assert put(clean, "shape", "/tmp", make_tar(("dir", "d", ""), ("file", "d/f", "data"), ("symlink", "d/l", "f"))).ok
    found = path_stat(head(clean, "shape", "/tmp/d"))
    assert found.name == "d" and found.is_dir and found.link_target == ""
    assert found.mode == (1 << 31) | 0o755
    link = path_stat(head(clean, "shape", "/tmp/d/l"))
    assert link.mode & (1 << 27) and link.link_target == "/tmp/d/f"
    assert list(tar_files(get(clean, "shape", "/tmp/d").body)) == ["d", "d/f", "d/l"]
    assert list(tar_files(get(clean, "shape", "/tmp/d/.").body)) == [".", "./f", "./l"]
    assert list(tar_files(get(clean, "shape", "/tmp/d/f").body)) == ["f"]
    assert tar_files(get(clean, "shape", "/tmp/d/l").body)["l"].issym()
    # A trailing slash follows a final symlink; the entry keeps the asked-for name.
    assert put(clean, "shape", "/", make_tar(("symlink", "dl", "/tmp/d"))).ok
    assert list(tar_files(get(clean, "shape", "/dl/").body)) == ["dl", "dl/f", "dl/l"]
    # A running container's /proc is an empty directory, as in Docker's view; its insides are not there.
    assert list(tar_files(get(clean, "shape", "/proc").body)) == ["proc"]
    assert get(clean, "shape", "/proc/1/environ").status == 404
    assert put(clean, "shape", "/proc/sys", make_tar(("file", "x", "x"))).status == 404


# -- symlinks in the container must resolve inside it ------------------------


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[Path]:
    """A host directory with a secret; every attack below aims at it."""
    target = tmp_path / "sentinel"
    target.mkdir()
    (target / "secret").write_text(SECRET)
    before = tree_state(target)
    yield target
    assert tree_state(target) == before, "a host file changed through a container's symlink"


def plant_symlinks(daemon: Daemon, container: str, sentinel: Path) -> None:
    hostile = make_tar(
        ("symlink", "abs", str(sentinel)),
        ("symlink", "rel", "../" * 12 + str(sentinel).lstrip("/")),
        ("symlink", "chain1", "/chain2"),
        ("symlink", "chain2", "../../.." + str(sentinel)),
        ("symlink", "rootlink", "/"),
        ("symlink", "up", ".."),
        ("symlink", "etclink", "/etc"),
        ("symlink", "loop", "loop"),
    )
    response = put(daemon, container, "/", hostile)
    assert response.ok, response.message


@pytest.mark.parametrize("state", ["running", "created", "exited"])
def test_symlinks_in_the_container_never_reach_the_host(clean: Daemon, sentinel: Path, state: str) -> None:
    name = f"hostile-{state}"
    if state == "running":
        run_detached(clean, name)
    elif state == "created":
        create_only(clean, name)
    else:
        run_detached(clean, name, "true")
        wait_for(lambda: clean.inspect(name)["State"]["Status"] == "exited")
    plant_symlinks(clean, name, sentinel)
    inside = str(sentinel).lstrip("/")

    # Reading: every way to the host's sentinel lands inside the container, where there is none.
    for path in (
        "/abs/secret",
        "/rel/secret",
        "/chain1/secret",
        f"/rootlink/{inside}/secret",
        f"/up/up/up/{inside}/secret",
        "/abs/",
        "/loop/x",
    ):
        assert get(clean, name, path).status in (404, 500), path
        assert head(clean, name, path).status in (404, 500), path
    assert path_stat(head(clean, name, "/rel")).link_target == str(sentinel)  # resolved as chroot would
    assert container_text(clean, name, "/etclink/passwd") == BUSYBOX_PASSWD  # the container's, not the host's
    whole = get(clean, name, "/")
    assert whole.ok and SECRET.encode() not in whole.body
    assert tar_files(whole.body)["/abs"].issym()

    # Writing: the same paths as extraction points do not exist in the container ...
    for path in ("/abs", "/rel", "/chain1", f"/rootlink/{inside}"):
        assert put(clean, name, path, make_tar(("file", "pwned", "x"))).status == 404, path
    # ... and members written through symlinks (the container's, or the archive's own) stay inside it.
    attacks = [
        make_tar(("file", "abs/pwned1", "x")),
        make_tar(("symlink", "evil", str(sentinel)), ("file", "evil/pwned2", "x")),
        make_tar(("symlink", "evil2", "../../../../../.."), ("file", f"evil2/{inside}/pwned3", "x")),
        make_tar(("file", f"/{inside}/pwned4", "x")),
        make_tar(("symlink", "etclink2", "/etc"), ("file", "etclink2/pwned5", "x")),
    ]
    for body in attacks:
        response = put(clean, name, "/", body)
        assert response.ok, response.message
    hardlink = put(clean, name, "/", make_tar(("hardlink", "hl", "abs/secret")))
    assert hardlink.status == 400 and "not found" in hardlink.message
    assert put(clean, name, "/etclink", make_tar(("file", "pwned6", "x"))).ok  # the container's /etc
    assert not list(sentinel.glob("pwned*")) and not Path("/etc/pwned5").exists() and not Path("/etc/pwned6").exists()
    for found in ("pwned1", "pwned2", "pwned3", "pwned4"):
        assert container_text(clean, name, f"/{inside}/{found}") == "x"
    assert container_text(clean, name, "/etc/pwned6") == "x"

    # export: the symlinks as symlinks, never what they point at on the host.
    exported = clean.api("GET", f"/containers/{name}/export")
    assert exported.ok and SECRET.encode() not in exported.body
    assert tar_files(exported.body)["abs"].linkname == str(sentinel)


@needs_docker
def test_docker_cp_follow_link_stays_in_the_container(clean: Daemon, sentinel: Path, tmp_path: Path) -> None:
    run_detached(clean, "follow")
    plant_symlinks(clean, "follow", sentinel)
    escaped = clean.docker("cp", "-L", "follow:/abs", str(tmp_path / "got"))
    assert escaped.returncode == 1 and "Could not find the file" in escaped.stderr
    assert not (tmp_path / "got").exists()
    docker_ok(clean, "cp", "-L", "follow:/etclink", str(tmp_path / "etc"))
    assert (tmp_path / "etc" / "passwd").read_text() == BUSYBOX_PASSWD
    docker_ok(clean, "cp", "follow:/abs", str(tmp_path / "link"))  # without -L: the symlink itself
    assert os.readlink(tmp_path / "link") == str(sentinel)


def _kernel_at_least(major: int, minor: int) -> bool:
    release = os.uname().release.split("-")[0].split(".")
    return (int(release[0]), int(release[1])) >= (major, minor)


@needs_docker
@pytest.mark.skipif(not _kernel_at_least(6, 15), reason="mounts under a detached mount need Linux 6.15")
def test_cp_sees_a_stopped_containers_volumes_and_export_does_not(clean: Daemon, tmp_path: Path) -> None:
    docker_ok(clean, "run", "--name", "withvol", "-v", "cpvol:/data", "busybox", "sh", "-c", "echo in-volume > /data/f")
    try:
        assert tar_content(get(clean, "withvol", "/data/f").body, "f") == "in-volume\n"
        (tmp_path / "new").write_text("copied into the volume\n")
        docker_ok(clean, "cp", str(tmp_path / "new"), "withvol:/data/")
        seen = docker_ok(clean, "run", "--rm", "-v", "cpvol:/data", "busybox", "cat", "/data/new")
        assert seen.stdout == "copied into the volume\n"
        names = set(tar_files(clean.api("GET", "/containers/withvol/export").body))
        assert "data" in names and "data/f" not in names and "data/new" not in names
    finally:
        clean.docker("rm", "-f", "withvol")
        clean.docker("volume", "rm", "cpvol")


@needs_docker
def test_put_never_takes_a_running_containers_mounts_away(clean: Daemon) -> None:
    docker_ok(
        clean, "run", "-d", "--name", "mounted", "--hostname", "mine", "-v", "keepvol:/data", "busybox", "sleep", "1000"
    )
    try:
        docker_ok(clean, "exec", "mounted", "sh", "-c", "echo precious > /data/f")
        # A file over the volume's mount point (docker-py's put_archive allows type changes): refused.
        replaced = put(clean, "mounted", "/", make_tar(("file", "data", "x")))
        assert replaced.status == 400 and "mount point" in replaced.message
        assert put(clean, "mounted", "/", make_tar(("dir", "data", ""), ("file", "data/g", "y"))).ok  # merging is fine
        assert docker_ok(clean, "exec", "mounted", "cat", "/data/f", "/data/g").stdout == "precious\ny"
        # A file over a file mount (/etc/hostname): hidden under the mount, as in Docker's view.
        assert put(clean, "mounted", "/etc", make_tar(("file", "hostname", "other\n"))).ok
        assert docker_ok(clean, "exec", "mounted", "cat", "/etc/hostname").stdout == "mine\n"
    finally:
        clean.docker("rm", "-f", "mounted")
        clean.docker("volume", "rm", "keepvol")


# -- export ------------------------------------------------------------------


@needs_docker
def test_docker_export_lists_changes_without_deletions(clean: Daemon, tmp_path: Path) -> None:
    clean.api(
        "POST",
        "/containers/create",
        query={"name": "exp"},
        json={"Image": "busybox", "Cmd": ["sh", "-c", "echo new > /root/changed; rm /etc/group; sleep 1000"]},
    )
    docker_ok(clean, "start", "exp")
    wait_for(lambda: head(clean, "exp", "/root/changed").ok)
    listing = subprocess.run(f"{DOCKER} export exp | tar -t", shell=True, env=clean.env, capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    names = set(listing.stdout.split())
    assert {"bin/busybox", "bin/sh", "etc/passwd", "root/changed", "proc/", "tmp/"} <= names
    assert "etc/group" not in names and not any(n.startswith(("/", "./")) for n in names)
    out = tmp_path / "exp.tar"
    result = clean.corral("export", "-o", str(out), "exp")
    assert result.returncode == 0, result.stderr
    assert set(tar_files(out.read_bytes())) == {n.rstrip("/") for n in names}
    assert tar_content(out.read_bytes(), "root/changed") == "new\n"
    clean.docker("stop", "-t", "0", "exp")
    stopped = subprocess.run(f"{DOCKER} export exp | tar -t", shell=True, env=clean.env, capture_output=True, text=True)
    assert set(stopped.stdout.split()) == names
    assert clean.docker("export", "nosuch").returncode == 1


# -- corral's own CLI --------------------------------------------------------


def test_corral_cp_both_ways_and_streams(clean: Daemon, tmp_path: Path) -> None:
    run_detached(clean, "ccp")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a").write_text("alpha\n")
    (src / "sub" / "b").write_text("beta\n")
    result = clean.corral("cp", str(src), "ccp:/tmp/")
    assert result.returncode == 0, result.stderr
    result = clean.corral("cp", f"{src}/.", "ccp:/tmp/dot")
    assert result.returncode == 0, result.stderr
    assert container_text(clean, "ccp", "/tmp/src/sub/b") == "beta\n"
    assert container_text(clean, "ccp", "/tmp/dot/a") == "alpha\n"

    result = clean.corral("cp", "ccp:/tmp/src", str(tmp_path / "back"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "back" / "sub" / "b").read_text() == "beta\n"
    result = clean.corral("cp", "ccp:/tmp/dot/.", str(tmp_path / "back"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "back" / "a").read_text() == "alpha\n"

    streamed = subprocess.run([*CORRAL, "cp", "ccp:/etc/passwd", "-"], env=clean.env, capture_output=True, check=True)
    assert tar_content(streamed.stdout, "passwd") == BUSYBOX_PASSWD
    piped = subprocess.run(
        [*CORRAL, "cp", "-", "ccp:/tmp"],
        input=make_tar(("file", "piped", "from stdin")),
        env=clean.env,
        capture_output=True,
    )
    assert piped.returncode == 0, piped.stderr
    assert container_text(clean, "ccp", "/tmp/piped") == "from stdin"
    not_dir = subprocess.run([*CORRAL, "cp", "-", "ccp:/etc/passwd"], input=b"", env=clean.env, capture_output=True)
    assert not_dir.returncode == 1 and b"must be a directory" in not_dir.stderr

    missing = clean.corral("cp", "ccp:/nope", str(tmp_path / "x"))
    assert missing.returncode == 1 and "Could not find the file /nope in container ccp" in missing.stderr
    both = clean.corral("cp", "ccp:/a", "ccp:/b")
    assert both.returncode != 0 and "copying between containers is not supported" in both.stderr
    over = clean.corral("cp", str(src), "ccp:/etc/passwd")
    assert over.returncode != 0 and "cannot copy directory" in over.stderr


def test_copy_uid_gid_takes_the_container_user(clean: Daemon, tmp_path: Path) -> None:
    created = clean.api(
        "POST",
        "/containers/create",
        query={"name": "owned"},
        json={"Image": "busybox", "User": "nobody", "Cmd": ["sleep", "1000"]},
    )
    assert created.ok, created.message
    body = make_tar(("file", "f", "x"))
    assert put(clean, "owned", "/tmp", body).ok
    assert tar_files(get(clean, "owned", "/tmp/f").body)["f"].uid == 0  # the archive's owner
    assert put(clean, "owned", "/tmp", body, copyUIDGID="true").ok
    member = tar_files(get(clean, "owned", "/tmp/f").body)["f"]
    assert (member.uid, member.gid) == (65534, 65534)


# -- docker-py ---------------------------------------------------------------


def test_docker_py_get_and_put_archive(clean: Daemon) -> None:
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{clean.socket}", version="1.41")
    try:
        container = client.containers.run("busybox", ["sleep", "1000"], detach=True, name="pyarch")
        assert container.put_archive("/tmp", make_tar(("dir", "py", ""), ("file", "py/hello", "from docker-py")))
        stream, stat = container.get_archive("/tmp/py")
        data = b"".join(stream)
        assert stat["name"] == "py" and stat["mode"] & (1 << 31)
        assert tar_content(data, "py/hello") == "from docker-py"
        assert container.exec_run(["cat", "/tmp/py/hello"]).output == b"from docker-py"
        with pytest.raises(docker.errors.NotFound):
            container.get_archive("/nope")
        exported = b"".join(container.export())
        assert "tmp/py/hello" in tar_files(exported)
    finally:
        client.close()


# -- the extractor on its own (the CLI uses it on the host) ------------------


def test_extract_stays_inside_the_destination(tmp_path: Path, sentinel: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    inside = str(sentinel).lstrip("/")

    def extract(body: bytes, **options: Any) -> int:
        fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return extract_tar(io.BytesIO(body), fd, ExtractOptions(chown=False, **options))
        finally:
            os.close(fd)

    assert extract(make_tar(("symlink", "out", str(sentinel)), ("file", "out/pwned", "x"))) == 2
    assert extract(make_tar(("symlink", "up", "../../../../../../.."), ("file", f"up/{inside}/pwned", "x"))) == 2
    assert extract(make_tar(("file", f"/{inside}/abs", "x"))) == 1
    assert (dest / inside / "pwned").read_text() == "x" and (dest / inside / "abs").read_text() == "x"
    for hostile in (
        make_tar(("file", "../escape", "x")),
        make_tar(("hardlink", "hl", f"{inside}/../../{inside}/secret")),
        make_tar(("hardlink", "hl", "missing")),
    ):
        with pytest.raises(ArchiveError):
            extract(hostile)
    devices = io.BytesIO()
    with tarfile.open(fileobj=devices, mode="w") as archive:
        node = tarfile.TarInfo("sda")
        node.type, node.devmajor, node.devminor = tarfile.BLKTYPE, 8, 0
        archive.addfile(node)
    with pytest.raises(ArchiveError, match="device nodes"):
        extract(devices.getvalue())
    renamed = extract(make_tar(("dir", "old", ""), ("file", "old/f", "y")), rename=lambda n: "new" + n[3:])
    assert renamed == 2 and (dest / "new" / "f").read_text() == "y"
    assert extract(b"") == 0
    assert not (tmp_path / "escape").exists() and not list(sentinel.glob("pwned*"))
