"""A configs directory: files independent, duplicates, the dependency graph, start order, the shipped examples."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from supervisor.reactor.config import (
    ConfigSet,
    Dependency,
    check_graph,
    is_config_name,
    load_dir,
    load_file,
    load_text,
    start_order,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def container(name: str, depends_on: str = "") -> str:
    return f'[containers.{name}]\nimage = "busybox"\ndepends_on = {{ {depends_on} }}\n'


def write(directory: Path, files: dict[str, str]) -> ConfigSet:
    for name, text in files.items():
        (directory / name).write_text(text)
    return load_dir(directory)


def messages(configs: ConfigSet, base: Path) -> list[str]:
    return [str(e).replace(f"{base}/", "") for e in configs.errors]


def test_a_bad_file_never_stops_the_good_ones(tmp_path: Path) -> None:
    configs = write(
        tmp_path,
        {
            "a.toml": container("api"),
            "b.toml": container("broken") + "[containers.broken.restart]\npolcy = 'always'\n",
            "c.toml": container("cache"),
        },
    )
    assert [c.name for c in configs.containers] == ["api", "cache"]
    assert messages(configs, tmp_path) == [
        'b.toml:5: containers.broken.restart.polcy: unknown key (did you mean "policy"?)'
    ]
    assert configs.held == {"broken"}
    assert [f.path.name for f in configs.files] == ["a.toml", "b.toml", "c.toml"]
    assert configs.errors_for(tmp_path / "b.toml") == configs.errors
    assert configs.errors_for(tmp_path / "a.toml") == ()


def test_only_toml_files_directly_in_the_directory(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "nested.toml").write_text(container("nested"))
    (tmp_path / "dir.toml").mkdir()
    configs = write(
        tmp_path,
        {
            "web.toml": container("web"),
            ".web.toml.swp": "binary junk",
            ".hidden.toml": container("hidden"),
            "web.toml~": container("backup"),
            "#web.toml#": container("autosave"),
            "notes.txt": "x",
        },
    )
    assert [c.name for c in configs.containers] == ["web"] and configs.errors == ()
    assert not is_config_name(".#web.toml") and not is_config_name(".toml") and is_config_name("web.toml")


def test_duplicate_names_reject_the_later_file(tmp_path: Path) -> None:
    configs = write(
        tmp_path,
        {"a.toml": container("web"), "b.toml": container("other") + "\n" + container("web")},
    )
    assert [c.name for c in configs.containers] == ["web"]
    assert configs.get("web") is not None and configs.get("web").source.path.name == "a.toml"  # type: ignore[union-attr]
    assert messages(configs, tmp_path) == ['b.toml:5: containers.web: container "web" is already defined in a.toml:1']
    # The rest of the rejected file is held: the engine leaves "other" as it is.
    assert configs.held == {"other"}


def test_missing_dependency(tmp_path: Path) -> None:
    configs = write(tmp_path, {"web.toml": container("web", 'db = "healthy"'), "ok.toml": container("ok")})
    assert [c.name for c in configs.containers] == ["ok"]
    assert messages(configs, tmp_path) == [
        'web.toml:3: containers.web.depends_on.db: depends on "db", which no config defines'
    ]
    assert configs.held == {"web"}


def test_dependency_on_a_broken_file_says_so(tmp_path: Path) -> None:
    configs = write(
        tmp_path, {"db.toml": container("db") + "oops = 1\n", "web.toml": container("web", "db = 'started'")}
    )
    assert configs.containers == ()
    assert messages(configs, tmp_path) == [
        "db.toml:4: containers.db.oops: unknown key (expected one of: command, depends_on, entrypoint, env, env_file, "
        "health, hostname, image, labels, logs, mounts, resources, restart, stop_signal, stop_timeout, user, workdir)",
        'web.toml:3: containers.web.depends_on.db: depends on "db", which db.toml declares but cannot '
        "load because of its errors",
    ]


def test_a_three_cycle_is_named_and_excluded_with_what_waits_on_it(tmp_path: Path) -> None:
    configs = write(
        tmp_path,
        {
            "stack.toml": container("web", 'api = "healthy"')
            + container("api", 'db = "started"')
            + container("db", 'web = "started"'),
            "front.toml": container("proxy", 'web = "started"'),
            "solo.toml": container("solo"),
        },
    )
    assert [c.name for c in configs.containers] == ["solo"]
    assert messages(configs, tmp_path) == [
        'front.toml:3: containers.proxy.depends_on.web: depends on "web", which is not loaded',
        "stack.toml:3: containers.web.depends_on.api: dependency cycle: web -> api -> db -> web",
        "stack.toml:6: containers.api.depends_on.db: dependency cycle: api -> db -> web -> api",
        "stack.toml:9: containers.db.depends_on.web: dependency cycle: db -> web -> api -> db",
    ]
    assert configs.held == {"web", "api", "db", "proxy"}


def test_start_order_respects_dependencies_then_names() -> None:
    text = (
        container("web", 'migrate = "completed_successfully", cache = "healthy"')
        + container("migrate", 'db = "healthy"')
        + container("db")
        + container("cache")
        + container("zeta")
        + container("alpha", 'web = "started"')
    )
    result = load_text(Path("x.toml"), text)
    assert result.errors == ()
    steps = start_order(result.containers)
    assert [s.container.name for s in steps] == ["cache", "db", "migrate", "web", "alpha", "zeta"]
    waits = {s.container.name: s.waits_for for s in steps}
    assert waits["web"] == (Dependency("cache", "healthy"), Dependency("migrate", "completed_successfully"))
    assert waits["db"] == ()


def test_check_graph_is_pure_over_names() -> None:
    result = load_text(Path("x.toml"), container("aa", 'bb = "started"') + container("bb", 'aa = "started"'))
    excluded, problems = check_graph(result.containers)
    assert excluded == {"aa", "bb"}
    assert [p.message for p in problems] == ["dependency cycle: aa -> bb -> aa", "dependency cycle: bb -> aa -> bb"]
    with pytest.raises(ValueError, match="cycle"):
        start_order(result.containers)


def test_every_shipped_example_loads_without_errors() -> None:
    configs = load_dir(CONFIGS)
    assert [str(e) for e in configs.errors] == []
    assert {"web", "worker", "migrate"} <= {c.name for c in configs.containers}
    web = configs.get("web")
    assert web is not None and web.health is not None and web.health.kind == "http"
    assert Dependency("migrate", "completed_successfully") in web.depends_on
    order = [s.container.name for s in configs.start_order()]
    assert order.index("migrate") < order.index("web")
    for path in sorted(CONFIGS.glob("*.toml")):
        assert load_file(path).errors == (), path


def test_the_documented_examples_are_the_shipped_ones() -> None:
    """docs/configuration.md's full examples load, and its copies of configs/ say what the files say."""
    docs = (CONFIGS.parent / "docs" / "configuration.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", docs, re.DOTALL)
    complete = [b for b in blocks if b.startswith(("[containers.", "# configs/"))]
    assert len(complete) >= 3
    for block in complete:
        copy_of = re.match(r"# configs/(\S+\.toml)\n", block)
        path = CONFIGS / (copy_of.group(1) if copy_of else "doc-example.toml")
        documented = load_text(path, block)
        assert documented.errors == (), [str(e) for e in documented.errors]
        if copy_of:
            shipped = load_file(path)
            assert [c.fingerprint() for c in documented.containers] == [c.fingerprint() for c in shipped.containers]


def test_a_file_that_is_not_toml_still_holds_the_names_in_its_headers(tmp_path: Path) -> None:
    configs = write(
        tmp_path,
        {"web.toml": '[containers.web]\nimage = "busybox\n[containers."api.v2"]\n', "ok.toml": container("ok")},
    )
    assert [c.name for c in configs.containers] == ["ok"]
    assert messages(configs, tmp_path) == ["web.toml:2: invalid TOML: Illegal character '\\n' (column 17)"]
    assert configs.held == {"web", "api.v2"}
