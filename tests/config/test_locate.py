"""Key paths to lines, in the TOML shapes people write."""

from __future__ import annotations

import tomllib

from supervisor.reactor.config.locate import KeyLocator

TEXT = '''\
# comment with [brackets] and key = "value"
[containers.web]
image = "busybox"   # trailing comment
command = [
  "a",   # a comment ] inside
  'b',
]
env = { A = "1", "B.x" = "2" }
restart.policy = "always"
script = """
multi \\""" still "" [not.a.table]
x = 1 """
after = 1
[ containers . "we b" . health ]
http = 'x'
[[containers.web.mounts]]
type = "bind"
[[containers.web.mounts]]
type = "tmpfs"
'''


def test_lines() -> None:
    tomllib.loads(TEXT)  # the locator only ever sees valid TOML
    locate = KeyLocator(TEXT).line
    assert locate(("containers",)) == 2
    assert locate(("containers", "web")) == 2
    assert locate(("containers", "web", "image")) == 3
    assert locate(("containers", "web", "command")) == 4
    assert locate(("containers", "web", "command", 1)) == 6
    assert locate(("containers", "web", "env", "B.x")) == 8
    assert locate(("containers", "web", "restart")) == 9
    assert locate(("containers", "web", "restart", "policy")) == 9
    assert locate(("containers", "web", "after")) == 13
    assert locate(("containers", "we b", "health", "http")) == 15
    assert locate(("containers", "web", "mounts", 1, "type")) == 19


def test_fallbacks() -> None:
    locate = KeyLocator(TEXT).line
    assert locate(("containers", "web", "missing")) == 2
    assert locate(("containers", "web", "command", 7)) == 4
    assert locate(("elsewhere",)) == 1


def test_a_table_header_wins_over_an_earlier_implied_one() -> None:
    text = '[containers.web.restart]\npolicy = "no"\n\n[containers.web]\nimage = "x"\n'
    locator = KeyLocator(text)
    assert locator.line(("containers", "web", "restart", "policy")) == 2
    # `containers.web` was implied on line 1 but written on line 4.
    assert locator.line(("containers", "web")) == 4


def test_never_fails_on_text_it_cannot_follow() -> None:
    assert KeyLocator('a = "unterminated\n[b').line(("b", "c")) == 1
