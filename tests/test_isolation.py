"""Done-when 2: a container sees its own pid 1, name, tree and mounts, and writes stay its own."""

from __future__ import annotations

from harness import Daemon


def test_pid_one(clean: Daemon) -> None:
    result = clean.corral("run", "--rm", "busybox", "sh", "-c", "echo $$")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1\n"


def test_hostname_is_short_id_or_given(clean: Daemon) -> None:
    result = clean.corral("run", "--name", "named", "busybox", "hostname")
    assert result.returncode == 0, result.stderr
    info = clean.inspect("named")
    assert result.stdout.strip() == info["Id"][:12] == info["Config"]["Hostname"]
    given = clean.corral("run", "--rm", "--hostname", "box", "busybox", "cat", "/etc/hostname")
    assert given.stdout == "box\n"


def test_sees_image_tree_and_no_host_paths(clean: Daemon) -> None:
    listing = clean.corral("run", "--rm", "busybox", "ls", "/")
    assert listing.returncode == 0, listing.stderr
    assert set(listing.stdout.split()) == {"bin", "dev", "etc", "home", "proc", "root", "sys", "tmp", "usr", "var"}
    mountinfo = clean.corral("run", "--rm", "busybox", "cat", "/proc/self/mountinfo").stdout
    assert mountinfo
    for host_path in (str(clean.base), "/tmp/", "/var/lib", "/root", "/home/"):
        assert host_path not in mountinfo, f"{host_path} visible in:\n{mountinfo}"
    targets = {line.split()[4] for line in mountinfo.splitlines()}
    assert {
        "/",
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/etc/hostname",
        "/etc/hosts",
        "/etc/resolv.conf",
    } <= targets


def test_writes_stay_in_the_container(clean: Daemon) -> None:
    first = clean.corral("run", "--name", "writer", "busybox", "sh", "-c", "echo data > /tmp/file && cat /tmp/file")
    assert first.stdout == "data\n", first.stderr
    second = clean.corral("run", "--rm", "busybox", "ls", "/tmp")
    assert second.returncode == 0 and second.stdout == ""
    upper = clean.root / "containers" / clean.inspect("writer")["Id"] / "upper" / "tmp" / "file"
    assert upper.read_text() == "data\n"
    layers = list((clean.root / "layers").iterdir())
    assert not any((layer / "tmp" / "file").exists() for layer in layers)


def test_namespaces_devices_and_proc(clean: Daemon) -> None:
    script = (
        "ls /dev; echo --; ip -o link | cut -d: -f2; echo --; "
        "cat /proc/kcore | wc -c; echo --; (echo 0 > /proc/sys/vm/overcommit_memory) 2>&1; echo --; "
        "grep CapEff /proc/self/status"
    )
    result = clean.corral("run", "--rm", "busybox", "sh", "-c", script)
    dev, links, kcore, proc_sys, caps = result.stdout.split("--\n")
    assert {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "mqueue"} <= set(dev.split())
    assert links.split() == ["lo"]
    assert kcore.strip() == "0"
    assert "Read-only file system" in proc_sys
    # Docker's default capability set.
    assert caps.split()[1] == "00000000a80425fb"


def test_user_and_capabilities(clean: Daemon) -> None:
    nobody = clean.corral("run", "--rm", "-u", "nobody", "busybox", "sh", "-c", "id; grep CapEff /proc/self/status")
    assert "uid=65534(nobody) gid=65534(nobody)" in nobody.stdout
    assert "0000000000000000" in nobody.stdout
    numeric = clean.corral("run", "--rm", "-u", "1234:99", "busybox", "id", "-u")
    assert numeric.stdout == "1234\n"
    dropped = clean.corral(
        "run", "--rm", "--cap-drop", "all", "--cap-add", "kill", "busybox", "grep", "CapEff", "/proc/self/status"
    )
    assert dropped.stdout.split()[1] == f"{1 << 5:016x}"
    nnp = clean.corral(
        "run", "--rm", "--security-opt", "no-new-privileges", "busybox", "grep", "NoNewPrivs", "/proc/self/status"
    )
    assert nnp.stdout.split()[1] == "1"


def test_env_and_workdir(clean: Daemon) -> None:
    result = clean.corral(
        "run", "--rm", "-e", "A=1", "-w", "/made/here", "busybox", "sh", "-c", "echo $A $PATH $HOME; pwd"
    )
    assert result.stdout.splitlines() == [
        "1 /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /root",
        "/made/here",
    ]
