"""The fingerprint: same desired state, same digest; any change of value, a different one."""

from __future__ import annotations

from pathlib import Path

from supervisor.reactor.config import ContainerConfig, load_file, load_text

ONE = """\
[containers.web]
image = "busybox"
command = ["httpd", "-f"]
env = { A = "1", B = "2" }
restart = { policy = "always", max = "30s" }
depends_on = { db = "healthy", cache = "started" }
[containers.web.health]
tcp = 8080
"""

# The same, written differently: comments, order, quoting, units, explicit defaults, other file.
TWO = """\
# the web server
[containers.web.health]
tcp = "127.0.0.1:8080"
timeout = "30s"

[containers."web"]
depends_on.cache = 'started'
depends_on.db = "healthy"
env = ["B=2", "A=1"]
command = [
    "httpd",   # serve
    "-f",
]
image = 'busybox'
restart.policy = "always"
restart.max = 30
restart.initial = "100ms"
stop_timeout = "10s"
"""


def one(text: str, path: str = "a.toml") -> ContainerConfig:
    result = load_text(Path(path), text)
    assert result.errors == ()
    (container,) = result.containers
    return container


def test_stable_across_formatting() -> None:
    first, second = one(ONE), one(TWO, "elsewhere/b.toml")
    assert first.source != second.source
    assert first.fingerprint() == second.fingerprint()
    assert len(first.fingerprint()) == 64


def test_changes_with_any_value() -> None:
    base = one(ONE).fingerprint()
    for old, new in [
        ('"-f"]', '"-f", "-v"]'),
        ('B = "2"', 'B = "3"'),
        ('max = "30s"', 'max = "31s"'),
        ('db = "healthy"', 'db = "started"'),
        ("tcp = 8080", "tcp = 8081"),
        ('image = "busybox"', 'image = "busybox:1.36"'),
    ]:
        changed = ONE.replace(old, new)
        assert changed != ONE, old
        assert one(changed).fingerprint() != base, new


def test_not_given_and_given_empty_differ() -> None:
    plain = one('[containers.web]\nimage = "busybox"\n').fingerprint()
    empty = one('[containers.web]\nimage = "busybox"\ncommand = []\n').fingerprint()
    assert plain != empty


def test_changes_with_env_file_content(tmp_path: Path) -> None:
    (tmp_path / "web.toml").write_text('[containers.web]\nimage = "busybox"\nenv_file = "web.env"\n')
    (tmp_path / "web.env").write_text("MODE=fast\n")
    before = load_file(tmp_path / "web.toml").containers[0].fingerprint()
    (tmp_path / "web.env").write_text("# now with a comment\nMODE=fast\n")
    assert load_file(tmp_path / "web.toml").containers[0].fingerprint() == before
    (tmp_path / "web.env").write_text("MODE=slow\n")
    assert load_file(tmp_path / "web.toml").containers[0].fingerprint() != before
