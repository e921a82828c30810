"""A fetch_dir's local folder: placeholders, the default under local_base, the exclude layers, and
the refusal of two fetches sharing one folder. No network: all of it is decided from the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from sbatchman.config import parse
from sbatchman.errors import ConfigError
from sbatchman.model import Request
from sbatchman.precedence import merge_excludes
from sbatchman.selection.rules import Rule
from sbatchman.targets import resolve_fetch_targets
from tests.support.env import IsolatedEnv


def fail(text: str, tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as err:
        parse(text, tmp_path / "c.toml")
    return str(err.value).removeprefix(f"{tmp_path / 'c.toml'}: ")


def locals_of(text: str, tmp_path: Path) -> list[Path]:
    return [d.local for c in parse(text, tmp_path / "c.toml").clusters for d in c.fetch_dirs]


def test_cluster_and_alias_are_filled_in(tmp_path: Path, isolated_env: IsolatedEnv) -> None:
    text = (
        "[[clusters]]\nname = 'leo'\n"
        "[[clusters.fetch_dirs]]\nremote = '/s/app1/'\nlocal = '~/res/{cluster}/{alias}-out'\n"
        "[[clusters.fetch_dirs]]\nalias = 'b'\nremote = 'x'\nlocal = '/r/{alias}/{cluster}'\n"
    )
    assert locals_of(text, tmp_path) == [
        isolated_env.home / "res/leo/app1-out",
        Path("/r/b/leo"),
    ]


def test_double_braces_are_literal_braces(tmp_path: Path) -> None:
    text = (
        "[[clusters]]\nname = 'leo'\n"
        "[[clusters.fetch_dirs]]\nremote = 'x'\nlocal = '/r/{{cluster}}/{{{cluster}}}'\n"
    )
    assert locals_of(text, tmp_path) == [Path("/r/{cluster}/{leo}")]


def test_a_sync_dir_local_keeps_its_braces(tmp_path: Path) -> None:
    """Placeholders are a fetch_dir's: a sync_dir's local means what it meant before."""
    text = "[[clusters]]\nname = 'leo'\n[[clusters.sync_dirs]]\nalias = 'p'\nlocal = '/r/{x}'\n"
    assert parse(text, tmp_path / "c.toml").clusters[0].sync_dirs[0].local == Path("/r/{x}")


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        (
            "/r/{clutser}",
            "'/r/{clutser}': {clutser} is not a placeholder (did you mean {cluster}?);"
            " the placeholders are {cluster} and {alias}; write {{ and }} for a literal brace",
        ),
        (
            "/r/{host}",
            "'/r/{host}': {host} is not a placeholder; the placeholders are {cluster} and"
            " {alias}; write {{ and }} for a literal brace",
        ),
        (
            "/r/{cluster",
            "'/r/{cluster': a lone '{' is not a placeholder; the placeholders are {cluster} and"
            " {alias}; write {{ and }} for a literal brace",
        ),
        (
            "/r/}",
            "'/r/}': a lone '}' is not a placeholder; the placeholders are {cluster} and"
            " {alias}; write {{ and }} for a literal brace",
        ),
    ],
)
def test_an_unknown_placeholder_is_one_line_naming_its_place(
    tmp_path: Path, local: str, expected: str
) -> None:
    text = (
        "[[clusters]]\nname = 'a'\n[[clusters]]\nname = 'b'\n"
        f"[[clusters.fetch_dirs]]\nremote = 'x'\nlocal = '{local}'\n"
    )
    assert fail(text, tmp_path) == f"clusters[1].fetch_dirs[0].local: {expected}"


def test_a_name_that_is_not_one_folder_is_refused(tmp_path: Path) -> None:
    text = "[[clusters]]\nname = 'a/b'\n"
    text += "[[clusters.fetch_dirs]]\nremote = 'x'\nlocal = '/r/{cluster}'\n"
    assert fail(text, tmp_path) == (
        "clusters[0].fetch_dirs[0].local: {cluster} would be 'a/b', which is not one folder"
        " name; rename the cluster or write the folder out in full"
    )


def test_no_local_means_local_base_cluster_alias(
    tmp_path: Path, isolated_env: IsolatedEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    body = (
        "[[clusters]]\nname = 'leo'\n"
        "[[clusters.fetch_dirs]]\nremote = '~/app1/'\n"
        "[[clusters.fetch_dirs]]\nalias = 'out'\nremote = '/s/o'\n"
        "[[clusters.sync_dirs]]\nalias = 'p'\n"
    )
    # No local_base: the original's ~/SbatchMan, for fetch only; a sync_dir keeps its folder.
    cfg = parse(body, tmp_path / "c.toml")
    base = isolated_env.home / "SbatchMan"
    assert [d.local for d in cfg.clusters[0].fetch_dirs] == [base / "leo/app1", base / "leo/out"]
    assert cfg.clusters[0].sync_dirs[0].local == tmp_path / "p"
    cfg = parse("[global]\nlocal_base = '/lb'\n" + body, tmp_path / "c.toml")
    assert [d.local for d in cfg.clusters[0].fetch_dirs] == [
        Path("/lb/leo/app1"),
        Path("/lb/leo/out"),
    ]
    assert cfg.clusters[0].sync_dirs[0].local == Path("/lb/p")


EXCLUDES = """
[global]
common_excludes = ["common"]
sync_excludes = ["g-sync"]
fetch_excludes = ["g-fetch"]

[[clusters]]
name = "a"
excludes = ["c-all"]
sync_excludes = ["c-sync"]
fetch_excludes = ["c-fetch"]

[[clusters.sync_dirs]]
alias = "p"
local = "/src/p"
excludes = ["d-sync"]

[[clusters.fetch_dirs]]
alias = "p"
remote = "p/results"
local = "/res"
excludes = ["d-fetch", "common"]
"""


def test_fetch_takes_the_fetch_layers_and_sync_the_sync_ones(tmp_path: Path) -> None:
    cfg = parse(EXCLUDES, tmp_path / "c.toml")
    a = cfg.clusters[0]
    assert merge_excludes(cfg.settings, a, a.fetch_dirs[0], ["cli"]) == (
        Rule("common", "global.common_excludes"),
        Rule("g-fetch", "global.fetch_excludes"),
        Rule("c-all", "clusters[0].excludes"),
        Rule("c-fetch", "clusters[0].fetch_excludes"),
        Rule("d-fetch", "clusters[0].fetch_dirs[0].excludes"),
        Rule("cli", "-e"),
    )
    assert merge_excludes(cfg.settings, a, a.sync_dirs[0], ["cli"]) == (
        Rule("common", "global.common_excludes"),
        Rule("g-sync", "global.sync_excludes"),
        Rule("c-all", "clusters[0].excludes"),
        Rule("c-sync", "clusters[0].sync_excludes"),
        Rule("d-sync", "clusters[0].sync_dirs[0].excludes"),
        Rule("cli", "-e"),
    )


def shared(text: str, tmp_path: Path, request: Request | None = None) -> str:
    cfg = parse(text, tmp_path / "c.toml")
    with pytest.raises(ConfigError) as err:
        resolve_fetch_targets(cfg, request or Request(), connecting=False)
    return str(err.value).removeprefix(f"{tmp_path / 'c.toml'}: ")


TWO = "[[clusters]]\nname = 'a'\n{one}\n[[clusters]]\nname = 'b'\n{two}\n"


def fetch_dir(local: str, remote: str = "/s/out") -> str:
    return f"[[clusters.fetch_dirs]]\nremote = '{remote}'\nlocal = '{local}'\n"


def test_two_clusters_in_one_folder_are_refused_naming_both(tmp_path: Path) -> None:
    text = TWO.format(one=fetch_dir("/res"), two=fetch_dir("/res/"))
    assert shared(text, tmp_path) == (
        "clusters[1].fetch_dirs[0].local and clusters[0].fetch_dirs[0].local are the same"
        " folder (/res): the fetches of b/out and a/out would overwrite each other's results;"
        ' put {cluster} in each local, for example local = "/res/{cluster}" in'
        " clusters[1].fetch_dirs[0]"
    )


def test_nested_folders_are_refused_and_the_fix_is_on_the_outer_one(tmp_path: Path) -> None:
    text = TWO.format(one=fetch_dir("/res/deep"), two=fetch_dir("/res"))
    assert shared(text, tmp_path) == (
        "clusters[1].fetch_dirs[0].local (/res) holds clusters[0].fetch_dirs[0].local"
        " (/res/deep): the fetches of b/out and a/out would overwrite each other's results;"
        ' put {cluster} in each local, for example local = "/res/{cluster}" in'
        " clusters[1].fetch_dirs[0]"
    )


def test_the_clash_is_refused_whichever_cluster_is_chosen(tmp_path: Path) -> None:
    """`fetch -c a` and later `fetch -c b` into one folder mix results just the same."""
    text = TWO.format(one=fetch_dir("/res"), two=fetch_dir("/res"))
    assert "are the same folder (/res)" in shared(text, tmp_path, Request(clusters=("a",)))


def test_two_fetch_dirs_without_alias_or_local_in_one_cluster(tmp_path: Path) -> None:
    text = (
        "[global]\nlocal_base = '/lb'\n[[clusters]]\nname = 'a'\n"
        "[[clusters.fetch_dirs]]\nremote = '/x/app1'\n[[clusters.fetch_dirs]]\nremote = '/y/app1'\n"
    )
    assert shared(text, tmp_path) == (
        "clusters[0].fetch_dirs[1] (no local: local_base/{cluster}/{alias}) and"
        " clusters[0].fetch_dirs[0] (no local: local_base/{cluster}/{alias}) are the same"
        " folder (/lb/a/app1): two fetches of a/app1 would overwrite each other's results;"
        ' give one of them its own alias = "..." (a fetch_dir without alias is named after'
        " its remote folder) or its own local"
    )


def test_placeholders_keep_the_clusters_apart(tmp_path: Path) -> None:
    text = TWO.format(one=fetch_dir("/res/{cluster}"), two=fetch_dir("/res/{cluster}"))
    targets = resolve_fetch_targets(parse(text, tmp_path / "c.toml"), Request(), connecting=False)
    assert [t.sync_dir.local for t in targets] == [Path("/res/a"), Path("/res/b")]
