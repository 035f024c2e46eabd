"""Spares: a container's first process, forked before the container exists.

The daemon reserves the ID of its next container ahead of the create
that will use it, makes that ID's cgroup, and asks the launcher (`spare`)
for a process in it (reactor/spare.py). The launcher clones it into the
cgroup (CLONE_INTO_CGROUP, v1 hierarchies through `tasks`), already pid 1
of a new pid namespace; it unshares net (loopback up), uts and ipc, none
of which holds anything of a container yet, and waits on a socket pair.
When a `prepare` or `start` comes for that ID, the launcher hands it the
LaunchSpec and its descriptors instead of forking, and it goes on exactly
as a freshly forked one does (isolation/process.py): mount and cgroup
namespaces, rootfs, user, park or exec.

Given a tree (`build`, `serves`: a plain container of the last create's
image, no mounts, no tty), the spare also makes its mount and cgroup
namespaces and builds that tree ahead, pivoted into (`build` names the
container's directory while it is still staged; `serves` is the same
container once its create has moved it into place). It is then handed
over with it only to a spec of the same tree (rootfs.same_tree) whose
overlay dirs are still the ones it mounted (by inode: a layer removed and
unpacked again at the same path is another directory); it rewrites the
generated /etc files whose contents differ (another --hostname). Handed
any other spec, it goes back to the host's mount namespace (it kept a
descriptor of it), which drops the tree and its overlay, and builds that
spec's tree as a spare without one does. Nothing that could change on the
host after the pivot is in a tree built ahead: no binds or volumes, whose
sources a mount namespace made ahead would see as they were.

So the clone of the launcher, the copy-on-write faults that follow it and
the network namespace are paid while the daemon is idle, not while a
`docker run` waits. Any trouble with a spare (it died, its cgroup is not
the spec's) falls back to forking afresh. A spare exits when the launcher
goes away; `discard`, or the connection that asked for it closing, kills
it.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import socket
from dataclasses import dataclass, field
from typing import Any, NoReturn

from supervisor.isolation import syscalls
from supervisor.isolation.launcher import protocol
from supervisor.isolation.launcher.journal import log
from supervisor.isolation.process import (
    Stdio,
    build_tree_ahead,
    join_v1_cgroups,
    leave_tree,
    make_spare_namespaces,
    run_container_process,
)
from supervisor.isolation.rootfs import same_tree
from supervisor.isolation.spec import LaunchSpec, Membership

SPARE_NAME = b"corral-spare"


@dataclass
class Spare:
    cid: str
    pid: int
    pidfd: int
    sock: socket.socket
    cgroup: Membership | None
    owner: Any
    # With a tree built ahead: the spec of the container it serves, and its dirs' identities (_tree_ids).
    serves: LaunchSpec | None = None
    tree_ids: tuple[tuple[int, int], ...] = ()
    # (connection, request id) of `discard` requests, answered once it is reaped.
    waiters: list[tuple[Any, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Handover:
    """What a taken spare receives besides its descriptors (stdin, stdout, stderr, status, [go])."""

    spec: LaunchSpec
    tty: bool
    prepared: bool
    # Whether the tree it built ahead (if any) is `spec`'s (_fits); if not, it builds `spec`'s anew.
    use_tree: bool = False


class Spares:
    def __init__(self, launcher_pidfd: int, reply: Any) -> None:
        self._launcher_pidfd = launcher_pidfd
        self._reply = reply
        self._by_cid: dict[str, Spare] = {}
        # Killed ones until reaped, for their discard replies.
        self._dying: dict[int, Spare] = {}

    def __contains__(self, cid: str) -> bool:
        return cid in self._by_cid

    def fork(
        self,
        conn: Any,
        request_id: Any,
        cid: str,
        cgroup: Membership | None,
        tree: tuple[LaunchSpec, LaunchSpec] | None = None,
    ) -> None:
        """Clone a spare for `cid` into `cgroup`. With a `tree` (build, serves) it also builds
        `build`'s tree (its directory laid out already, in a staging dir), which it will be handed
        with `serves`: the same container's spec once its directory has moved into place."""
        if cid in self._by_cid:
            self._reply(conn, request_id, {"error": f"a spare for {cid} exists already"}, None)
            return
        build, serves = tree if tree is not None else (None, None)
        try:
            tree_ids = _tree_ids(build) if build is not None else ()
        except OSError as err:
            self._reply(conn, request_id, {"error": f"spare: {err}"}, None)
            return
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        cgroup_fd = None
        try:
            if cgroup is not None and cgroup.v2_dir is not None:
                cgroup_fd = os.open(cgroup.v2_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            pid, pidfd = syscalls.clone_process(syscalls.CLONE_NEWPID, cgroup_fd)
        except OSError as err:
            parent_end.close()
            child_end.close()
            self._reply(conn, request_id, {"error": f"spare: {err}"}, None)
            return
        finally:
            if cgroup_fd is not None:
                os.close(cgroup_fd)
        if pid == 0:
            try:
                parent_end.close()
                _run_spare(child_end, self._launcher_pidfd, cgroup, build)
            finally:
                os._exit(125)
        child_end.close()
        self._by_cid[cid] = Spare(cid, pid, pidfd, parent_end, cgroup, conn, serves, tree_ids)
        log.info("spare.forked", cid=cid, pid=pid)
        self._reply(conn, request_id, {"pid": pid}, None)

    def take(self, spec: LaunchSpec, stdio: Stdio, status_w: int, go_r: int | None) -> tuple[int, int] | None:
        """(pid, pidfd) of `spec.id`'s spare, now running as its first process; None to fork afresh."""
        spare = self._by_cid.pop(spec.id, None)
        if spare is None:
            return None
        if spare.cgroup != spec.cgroup:
            self._kill(spare)
            if spare.serves is not None:
                # Its overlay shares the upper dir the fresh fork mounts; gone once it is a zombie.
                os.waitid(os.P_PIDFD, spare.pidfd, os.WEXITED | os.WNOWAIT)
            return None
        use_tree = spare.serves is not None and _fits(spare, spec)
        if spare.serves is not None and not use_tree:
            log.info("spare.tree_unused", cid=spec.id)
        fds = [stdio.stdin, stdio.stdout, stdio.stderr, status_w, *([go_r] if go_r is not None else [])]
        handover = Handover(spec, tty=stdio.tty is not None, prepared=go_r is not None, use_tree=use_tree)
        try:
            spare.sock.sendmsg([pickle.dumps(handover)], protocol.fds_to_ancillary(fds))
        except OSError:
            self._kill(spare)  # died meanwhile
            return None
        spare.sock.close()
        return spare.pid, spare.pidfd

    def discard(self, conn: Any, request_id: Any, cid: str) -> None:
        """Kill `cid`'s spare; answered once it is reaped (so its cgroup can go)."""
        spare = self._by_cid.pop(cid, None)
        if spare is None:
            self._reply(conn, request_id, {}, None)
            return
        spare.waiters.append((conn, request_id))
        self._kill(spare)

    def drop_connection(self, conn: Any) -> None:
        for spare in [s for s in self._by_cid.values() if s.owner is conn]:
            del self._by_cid[spare.cid]
            self._kill(spare)
        for spare in self._dying.values():
            spare.waiters = [w for w in spare.waiters if w[0] is not conn]

    def reaped(self, pid: int) -> bool:
        """Note a spare's death; False if `pid` is none of ours."""
        spare = self._dying.pop(pid, None)
        if spare is None:
            spare = next((s for s in self._by_cid.values() if s.pid == pid), None)
            if spare is None:
                return False
            del self._by_cid[spare.cid]
            spare.sock.close()
            log.warning("spare.died", cid=spare.cid, pid=pid)
        protocol.close_quietly(spare.pidfd)
        for conn, request_id in spare.waiters:
            self._reply(conn, request_id, {}, None)
        return True

    def close(self) -> None:
        """Kill every spare and wait for it (the launcher is exiting)."""
        for spare in list(self._by_cid.values()):
            self._kill(spare)
        self._by_cid.clear()
        for pid, spare in list(self._dying.items()):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            protocol.close_quietly(spare.pidfd)
        self._dying.clear()

    def _kill(self, spare: Spare) -> None:
        spare.sock.close()
        try:
            signal.pidfd_send_signal(spare.pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._dying[spare.pid] = spare


def _tree_ids(spec: LaunchSpec) -> tuple[tuple[int, int], ...]:
    """(st_dev, st_ino) of the overlay's dirs: the same after the staging dir's rename, not for a
    layer deleted and unpacked again at the same path (an image removed and loaded again)."""
    rootfs = spec.rootfs
    stats = (os.stat(os.path.join(rootfs.base, path)) for path in (*rootfs.lowers, rootfs.upper, rootfs.work))
    return tuple((st.st_dev, st.st_ino) for st in stats)


def _fits(spare: Spare, spec: LaunchSpec) -> bool:
    """Whether the tree `spare` built ahead is `spec`'s, as it is now on disk."""
    if spare.serves is None or not same_tree(spare.serves, spec):
        return False
    try:
        return _tree_ids(spec) == spare.tree_ids
    except OSError:
        return False


def _run_spare(
    sock: socket.socket, launcher_pidfd: int, cgroup: Membership | None, build: LaunchSpec | None
) -> NoReturn:
    """The spare itself: join the cgroup, make what it can ahead, wait to be taken, become the container."""
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    with open("/proc/self/comm", "wb") as comm:
        comm.write(SPARE_NAME)
    # 0-2 stay (the launcher's /dev/null or log), so nothing it receives lands on them.
    syscalls.close_fds_except({0, 1, 2, sock.fileno(), launcher_pidfd})
    if cgroup is not None:
        join_v1_cgroups(cgroup.v1_tasks)
    make_spare_namespaces()
    host_mount_ns = None
    if build is not None:
        try:
            host_mount_ns = build_tree_ahead(build)
        except BaseException as err:  # noqa: BLE001 - half a tree is no use: exit, and creates fork afresh
            log.warning("spare.tree_failed", cid=build.id, error=f"{type(err).__name__}: {err}")
            os._exit(125)
    handover, fds = _wait_for_handover(sock, launcher_pidfd)
    if host_mount_ns is not None and not handover.use_tree:
        # Made for another container: back out of it, and on as a spare without a tree.
        leave_tree(host_mount_ns)
    stdin, stdout, stderr, status_w, *rest = fds
    stdio = Stdio(stdin, stdout, stderr, tty=stdin if handover.tty else None)
    go = (rest[0], launcher_pidfd) if handover.prepared else None
    built = build if handover.use_tree else None
    run_container_process(handover.spec, stdio, status_w, go, spare=True, built=built)


def _wait_for_handover(sock: socket.socket, launcher_pidfd: int) -> tuple[Handover, list[int]]:
    while True:
        readable, _, _ = select.select([sock.fileno(), launcher_pidfd], [], [])
        if launcher_pidfd in readable:
            os._exit(0)
        try:
            data, ancdata, _flags, _addr = sock.recvmsg(
                protocol.MAX_MESSAGE, protocol.ancillary_space(), socket.MSG_CMSG_CLOEXEC
            )
        except InterruptedError:
            continue
        if not data:
            os._exit(0)  # the launcher let it go without a container
        sock.close()
        handover: Handover = pickle.loads(data)
        return handover, protocol.fds_from_ancillary(ancdata)
