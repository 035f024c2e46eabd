"""Every kind of mistake, reported as `file:line: key.path: message`, and a bad file yields nothing."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from supervisor.reactor.config import load_file, load_text

BASE = '[containers.web]\nimage = "busybox"\n'


def errors(text: str) -> list[str]:
    result = load_text(Path("configs/web.toml"), textwrap.dedent(text))
    assert result.containers == () or not result.errors
    return [str(e) for e in result.errors]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # A typo'd key, with the nearest valid one.
        (
            "[containers.web.restart]\npolcy = 'always'\n",
            'configs/web.toml:4: containers.web.restart.polcy: unknown key (did you mean "policy"?)',
        ),
        # Docker's and Compose's names point at ours.
        (
            "environment = { A = '1' }\n",
            'configs/web.toml:3: containers.web.environment: unknown key (did you mean "env"?)',
        ),
        (
            "logs = { max_size = 0, max_files = 2 }\n",
            "configs/web.toml:3: containers.web.logs.max_files: only 1 file when max_size = 0 (never rotate)",
        ),
        # Wrong types.
        (
            "[containers.web.resources]\nmemory = 12.5\n",
            'configs/web.toml:4: containers.web.resources.memory: expected a size like "64MiB", got 12.5',
        ),
        (
            "[containers.web.resources]\npids = '100'\n",
            'configs/web.toml:4: containers.web.resources.pids: expected an integer >= 1, got "100"',
        ),
        ("command = ['echo', 5]\n", "configs/web.toml:3: containers.web.command[1]: expected a string, got 5"),
        ("labels = { tier = 1 }\n", "configs/web.toml:3: containers.web.labels.tier: expected a string, got 1"),
        (
            "restart = 5\n",
            "configs/web.toml:3: containers.web.restart: expected a table ([containers.web.restart]), got 5",
        ),
        # Bad durations and sizes.
        (
            "stop_timeout = '5 sec'\n",
            'configs/web.toml:3: containers.web.stop_timeout: expected a duration like "500ms", "1m30s" '
            'or a number of seconds, got "5 sec"',
        ),
        (
            "[containers.web.health]\ncommand = ['true']\ninterval = '-1'\n",
            'configs/web.toml:5: containers.web.health.interval: expected a duration like "500ms", "1m30s" '
            'or a number of seconds, got "-1"',
        ),
        (
            "[containers.web.logs]\nmax_size = 'lots'\n",
            'configs/web.toml:4: containers.web.logs.max_size: expected a size like "64MiB", got "lots"',
        ),
        (
            "resources.memory = '1m'\n",
            'configs/web.toml:3: containers.web.resources.memory: expected at least 6MiB (Docker\'s minimum), got "1m"',
        ),
        # Bad enum values.
        (
            "[containers.web.restart]\npolicy = 'allways'\n",
            'configs/web.toml:4: containers.web.restart.policy: expected one of "no", "on-failure", "always", '
            '"unless-stopped", got "allways"',
        ),
        (
            "depends_on = { db = 'ready' }\n",
            'configs/web.toml:3: containers.web.depends_on.db: expected one of "started", "healthy", '
            '"completed_successfully", got "ready"',
        ),
        (
            "stop_signal = 'SIGFOO'\n",
            'configs/web.toml:3: containers.web.stop_signal: expected a signal name or number, like "SIGTERM", '
            '"INT" or 15, got "SIGFOO"',
        ),
        # Two probes.
        (
            "[containers.web.health]\ncommand = ['true']\nhttp = 'http://127.0.0.1:8080/'\n",
            'configs/web.toml:5: containers.web.health.http: only one probe per container, and "command" is already given',
        ),
        (
            "[containers.web.health]\ninterval = '1s'\n",
            "configs/web.toml:3: containers.web.health: needs one probe: command, cmd_shell, tcp or http",
        ),
        (
            "health.http = 'https://example.com/'\n",
            'configs/web.toml:3: containers.web.health.http: expected a URL like "http://127.0.0.1:8080/health", '
            'got "https://example.com/": only http:// is supported',
        ),
        # max_retries belongs to on-failure.
        (
            "[containers.web.restart]\npolicy = 'always'\nmax_retries = 3\n",
            'configs/web.toml:5: containers.web.restart.max_retries: only applies to policy = "on-failure" (policy is "always")',
        ),
        (
            "restart = { initial = '1m', max = '10s' }\n",
            "configs/web.toml:3: containers.web.restart.initial: must not be longer than max (10s), got 60s",
        ),
        # Cross-field checks.
        (
            "resources = { memory_swap = '1g' }\n",
            "configs/web.toml:3: containers.web.resources.memory_swap: needs memory: "
            "memory_swap is the limit of memory plus swap",
        ),
        (
            "depends_on = ['web']\n",
            "configs/web.toml:3: containers.web.depends_on[0]: a container cannot depend on itself",
        ),
        (
            "mounts = [{ type = 'tmpfs', target = '/tmp' },\n          { type = 'volume', source = 'x y', target = '/data' }]\n",
            "configs/web.toml:4: containers.web.mounts[1].source: expected a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+), "
            'got "x y"',
        ),
        (
            "mounts = [{ type = 'tmpfs', target = '/tmp' }, { type = 'tmpfs', target = '/tmp/' }]\n",
            "configs/web.toml:3: containers.web.mounts[1].target: /tmp is already the target of mounts[0]",
        ),
        (
            "mounts = [{ type = 'bind', source = 'data', target = '/data' }]\n",
            "configs/web.toml:3: containers.web.mounts[0].source: expected an absolute host path or one starting with ./ "
            '(relative to this file), got "data" (a named volume needs type = "volume")',
        ),
        (
            "entrypoint = 'echo'\ncommand = ['hi']\n",
            "configs/web.toml:3: containers.web.entrypoint: a string entrypoint runs with /bin/sh -c and would get "
            "command as $0, $1, ...: give entrypoint as an array to pass it arguments",
        ),
        ("env = ['A']\n", 'configs/web.toml:3: containers.web.env[0]: expected "KEY=VALUE", got "A"'),
        ("workdir = 'app'\n", 'configs/web.toml:3: containers.web.workdir: expected an absolute path, got "app"'),
        (
            "image2 = 'x'\n",
            'configs/web.toml:3: containers.web.image2: unknown key (did you mean "image"?)',
        ),
    ],
)
def test_error_messages(body: str, expected: str) -> None:
    assert errors(BASE + body) == [expected]


def test_bad_name() -> None:
    assert errors('[containers."my web"]\nimage = "busybox"\n') == [
        'configs/web.toml:1: containers."my web": invalid container name: '
        'expected [a-zA-Z0-9][a-zA-Z0-9_.-]+, at least 2 characters, got "my web"'
    ]
    assert errors('[containers.w]\nimage = "busybox"\n') == [
        "configs/web.toml:1: containers.w: invalid container name: "
        'expected [a-zA-Z0-9][a-zA-Z0-9_.-]+, at least 2 characters, got "w"'
    ]


def test_missing_image_points_at_the_table() -> None:
    text = '# web\n\n[containers.web.health]\ntcp = 80\n[containers.web]\ncommand = ["true"]\n'
    assert errors(text) == ['configs/web.toml:5: containers.web: missing required key "image"']


def test_bad_image_reference() -> None:
    assert errors('[containers.web]\nimage = "Busybox"\n') == [
        "configs/web.toml:2: containers.web.image: invalid reference format: repository name must be lowercase"
    ]


def test_unknown_key_without_a_near_match_lists_the_valid_ones() -> None:
    assert errors(BASE + "[containers.web.logs]\nrotate = true\n") == [
        "configs/web.toml:4: containers.web.logs.rotate: unknown key (expected one of: max_files, max_size)"
    ]


def test_top_level() -> None:
    assert errors('container = 1\n[[containers]]\nimage = "x"\n') == [
        'configs/web.toml:1: container: unknown key (did you mean "containers"?)',
        "configs/web.toml:2: containers: expected tables [containers.NAME], got an array",
    ]


def test_toml_syntax_errors_carry_tomllibs_position() -> None:
    assert errors('[containers.web]\nimage = "busybox\n') == [
        "configs/web.toml:2: invalid TOML: Illegal character '\\n' (column 17)"
    ]
    assert errors('[containers.web]\nimage = "busybox"\nimage = "x"\n') == [
        "configs/web.toml:3: invalid TOML: Cannot overwrite a value (column 12)"
    ]
    assert errors('[containers.web]\ncommand = """\nsleep 1\n') == [
        "configs/web.toml:3: invalid TOML: Unterminated string at the end of the file"
    ]


def test_all_errors_of_a_file_at_once_in_line_order() -> None:
    text = BASE + "stop_timeout = 'soon'\n[containers.web.restart]\npolcy = 'always'\n[containers.other]\n"
    assert errors(text) == [
        'configs/web.toml:3: containers.web.stop_timeout: expected a duration like "500ms", "1m30s" '
        'or a number of seconds, got "soon"',
        'configs/web.toml:5: containers.web.restart.polcy: unknown key (did you mean "policy"?)',
        'configs/web.toml:6: containers.other: missing required key "image"',
    ]


def test_a_file_with_an_error_yields_no_containers() -> None:
    result = load_text(Path("web.toml"), BASE + '[containers.good]\nimage = "busybox"\n[containers.bad]\nimage = 5\n')
    assert result.containers == ()
    assert result.declared == ("web", "good", "bad")
    assert [str(e) for e in result.errors] == ["web.toml:6: containers.bad.image: expected a string, got 5"]


def test_missing_env_file(tmp_path: Path) -> None:
    (tmp_path / "web.toml").write_text(BASE + 'env_file = "missing.env"\n')
    result = load_file(tmp_path / "web.toml")
    assert [str(e) for e in result.errors] == [
        f"{tmp_path}/web.toml:3: containers.web.env_file: cannot read {tmp_path}/missing.env: No such file or directory"
    ]


def test_bad_env_file_line(tmp_path: Path) -> None:
    (tmp_path / "web.env").write_text("A=1\n\nFROM_HOST\n")
    (tmp_path / "web.toml").write_text(BASE + 'env_file = ["web.env"]\n')
    result = load_file(tmp_path / "web.toml")
    assert [str(e) for e in result.errors] == [
        f'{tmp_path}/web.toml:3: containers.web.env_file[0]: {tmp_path}/web.env:3: expected KEY=VALUE, got "FROM_HOST"'
    ]


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    assert [str(e) for e in load_file(tmp_path / "gone.toml").errors] == [
        f"{tmp_path}/gone.toml: cannot read: No such file or directory"
    ]
    (tmp_path / "latin1.toml").write_bytes(b'# ok\n# caf\xe9\n[containers.web]\nimage = "busybox"\n')
    assert [str(e) for e in load_file(tmp_path / "latin1.toml").errors] == [
        f"{tmp_path}/latin1.toml:2: not UTF-8 text (invalid continuation byte at byte 10)"
    ]
