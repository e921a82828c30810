"""`sync --delete` against real clusters (sshd + rsync, sshd + SFTP, and a local cluster).

Each test pins one promise of issue 14: only what sbatchman pushed, nobody changed since and is
gone locally (not excluded) is removed, never through a symlink; every safety stop deletes
nothing and fails the target.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.project import Run, run_cli, ssh_cluster, write_config
from tests.support.sshd import SshServer
from tests.support.trees import make_tree, stamp

# A local cluster (no host) goes through rsync by default and through the built-in copier
# with -b sftp: both are checked, beside rsync and SFTP over ssh.
BACKENDS = ["rsync", "sftp", "local-rsync", "local-copier"]
TREE = {
    "a.py": "a = 1\n",
    "keep.py": "keep\n",
    "notes.txt": "my notes\n",
    "old/x.py": "x\n",
    "old/sub/y.py": "y\n",
    "run.sh": "#!/bin/sh\n",
}


class Bed:
    """One sync_dir `proj` on one cluster, for one backend; `sync` runs the CLI on it."""

    def __init__(
        self, tmp_path: Path, server: SshServer, root: Path, backend: str, capsys: Any
    ) -> None:
        self.server = server
        self.is_local = backend.startswith("local")
        self.cluster_name = "here" if self.is_local else server.name
        self.local = make_tree(tmp_path / "proj", TREE, links={"latest": "a.py"})
        self.remote = root / "proj"
        self.backend = backend
        self.capsys = capsys
        self.config = tmp_path / "c.toml"
        self.write()

    def write(self, excludes: tuple[str, ...] = (), **extra: object) -> None:
        folder = {"alias": "proj", "local": str(self.local), "remote": str(self.remote), **extra}
        folder["excludes"] = list(excludes)
        if self.is_local:
            cluster: dict[str, Any] = {"name": "here", "sync_dirs": [folder]}
        else:
            cluster = ssh_cluster(self.server, [folder])
        write_config(self.config, [cluster])

    def sync(self, *flags: str) -> tuple[Run, dict[str, Any]]:
        backend = {"local-rsync": [], "local-copier": ["-b", "sftp"]}.get(
            self.backend, ["-b", self.backend]
        )
        run = run_cli(self.capsys, "sync", "--config", str(self.config), *backend, *flags)
        if "--json" in flags:
            return run, json.loads(run.out)["targets"][0]
        return run, {}

    def on_cluster(self) -> set[str]:
        found = set()
        for dirpath, dirs, files in os.walk(self.remote):
            for name in dirs + files:
                found.add((Path(dirpath) / name).relative_to(self.remote).as_posix())
        return found


@pytest.fixture(params=BACKENDS)
def bed(
    request: pytest.FixtureRequest,
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> Bed:
    server = three_clusters[0]
    made = Bed(tmp_path, server, cluster_roots[server.name], request.param, capsys)
    first, _ = made.sync()
    assert first.code == 0, first.err + first.out
    return made


def test_a_file_and_a_folder_removed_locally_go_and_nothing_else(bed: Bed) -> None:
    (bed.remote / "results.csv").write_text("a job wrote this\n")  # never pushed
    (bed.remote / "old" / "sub" / "job.out").write_text("job\n")  # a job's file in a pushed folder
    before = bed.on_cluster()
    (bed.local / "a.py").unlink()
    (bed.local / "latest").unlink()
    shutil.rmtree(bed.local / "old")
    run, report = bed.sync("--delete", "--json")
    assert run.code == 0, run.out
    assert sorted(report["deleted"]) == ["a.py", "latest", "old/sub/y.py", "old/x.py"]
    assert {k["path"] for k in report["kept_on_cluster"]} == {"old", "old/sub"}
    assert bed.on_cluster() == before - {"a.py", "latest", "old/x.py", "old/sub/y.py"}
    assert (bed.remote / "results.csv").read_text() == "a job wrote this\n"
    # The job's file gone too: the now-empty folders were kept (and forgotten), never deleted.
    (bed.remote / "old" / "sub" / "job.out").unlink()
    run, report = bed.sync("--delete", "--json")
    assert run.code == 0 and report["deleted"] == []
    assert (bed.remote / "old" / "sub").is_dir()


def test_whole_folder_removed_locally_goes_with_its_files(bed: Bed) -> None:
    shutil.rmtree(bed.local / "old")
    run, report = bed.sync("--delete", "--json")
    assert run.code == 0, run.out
    assert report["backend"] == {"local-rsync": "rsync", "local-copier": "local"}.get(
        bed.backend, bed.backend
    )
    assert sorted(report["deleted"]) == ["old", "old/sub", "old/sub/y.py", "old/x.py"]
    assert not (bed.remote / "old").exists()
    assert (bed.remote / "keep.py").exists()


def test_an_excluded_path_survives_though_gone_locally(bed: Bed) -> None:
    bed.write(excludes=("notes.txt", "old/"))
    (bed.local / "notes.txt").unlink()
    shutil.rmtree(bed.local / "old")
    run, report = bed.sync("--delete", "--json")
    assert run.code == 0, run.out
    assert report["deleted"] == []
    assert (bed.remote / "notes.txt").read_text() == "my notes\n"
    assert (bed.remote / "old" / "sub" / "y.py").exists()


def test_a_pushed_file_edited_on_the_cluster_survives_and_is_reported(bed: Bed) -> None:
    (bed.remote / "a.py").write_text("a = 2  # edited on the cluster\n")
    stamp(bed.remote / "notes.txt", 1_600_000_000)  # same content, other mtime: changed too
    (bed.local / "a.py").unlink()
    (bed.local / "notes.txt").unlink()
    (bed.local / "keep.py").unlink()
    run, report = bed.sync("--delete", "--json")
    assert run.code == 0, run.out
    assert report["deleted"] == ["keep.py"]
    why = "changed on the cluster since sbatchman pushed it"
    assert report["kept_on_cluster"] == [
        {"path": "a.py", "why": why},
        {"path": "notes.txt", "why": why},
    ]
    assert (bed.remote / "a.py").read_text().endswith("cluster\n")
    text, _ = bed.sync("--delete")  # forgotten: kept silently from now on
    assert text.code == 0 and "a.py" not in text.out


def test_dry_run_lists_every_delete_and_removes_nothing(bed: Bed) -> None:
    (bed.remote / "a.py").write_text("edited\n")
    (bed.local / "a.py").unlink()
    shutil.rmtree(bed.local / "old")
    before = bed.on_cluster()
    run, _ = bed.sync("--delete", "--dry-run")
    assert run.code == 0, run.out
    for path in ("old", "old/sub", "old/sub/y.py", "old/x.py"):
        assert f"would delete {bed.cluster_name}/proj: {path}\n" in run.out
    assert "kept a.py (changed on the cluster" in run.out
    assert bed.on_cluster() == before
    run, report = bed.sync("--delete", "--json")
    assert run.code == 0 and len(report["deleted"]) == 4


def test_max_delete_is_all_or_nothing(bed: Bed) -> None:
    for name in ("a.py", "keep.py", "notes.txt"):
        (bed.local / name).unlink()
    before = bed.on_cluster()
    run, report = bed.sync("--delete", "--max-delete", "2", "--json")
    assert run.code == 1
    assert report["status"] == "failed" and "more than --max-delete 2" in report["error"]
    assert report["deleted"] == [] and bed.on_cluster() == before
    run, report = bed.sync("--delete", "--max-delete", "3", "--json")
    assert run.code == 0 and sorted(report["deleted"]) == ["a.py", "keep.py", "notes.txt"]


def test_an_empty_or_missing_local_folder_deletes_nothing(bed: Bed) -> None:
    before = bed.on_cluster()
    shutil.rmtree(bed.local)
    bed.local.mkdir()
    run, report = bed.sync("--delete", "--json")
    assert run.code == 1 and "is empty" in report["error"]
    assert bed.on_cluster() == before
    bed.local.rmdir()
    run, _ = bed.sync("--delete")
    assert run.code != 0
    assert bed.on_cluster() == before


def test_a_lost_record_deletes_nothing(bed: Bed) -> None:
    state = Path(os.environ["XDG_STATE_HOME"]) / "sbatchman"
    assert any(state.rglob("*.json"))
    shutil.rmtree(state)
    (bed.local / "a.py").unlink()
    run, _ = bed.sync("--delete", "--dry-run")
    assert run.code == 0 and not state.exists()  # a dry run writes no record either
    run, report = bed.sync("--delete", "--json")
    assert run.code == 0
    assert report["deleted"] == [] and (bed.remote / "a.py").exists()
    assert any("no record of an earlier push" in w for w in report["warnings"])


def test_a_remote_symlink_to_a_folder_outside_is_never_followed(bed: Bed, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    shutil.copytree(bed.remote / "old", outside, symlinks=True)  # same sizes, same mtimes
    shutil.rmtree(bed.remote / "old")
    os.symlink(outside, bed.remote / "old")
    shutil.rmtree(bed.local / "old")
    run, report = bed.sync("--delete", "--json")
    assert run.code == 0, run.out
    assert report["deleted"] == []
    assert (outside / "x.py").exists() and (outside / "sub" / "y.py").exists()
    assert (bed.remote / "old").is_symlink()


def test_without_delete_nothing_is_ever_removed_and_the_config_turns_it_on(bed: Bed) -> None:
    (bed.local / "a.py").unlink()
    shutil.rmtree(bed.local / "old")
    run, report = bed.sync("--json")
    assert run.code == 0 and report["deleted"] == []
    assert {"a.py", "old/x.py"} <= bed.on_cluster()
    bed.write(delete=True)  # the record kept what those pushes landed: the delete can use it
    run, report = bed.sync("--json")
    assert run.code == 0
    assert sorted(report["deleted"]) == ["a.py", "old", "old/sub", "old/sub/y.py", "old/x.py"]


def test_two_sync_dirs_into_one_remote_folder_never_delete_each_others_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = make_tree(tmp_path / "one", {"a.py": "a\n", "shared/x.py": "x\n"})
    two = make_tree(tmp_path / "two", {"b.py": "b\n", "shared/y.py": "y\n"})
    remote = tmp_path / "cluster" / "merged"
    dirs = [
        {"alias": alias, "local": str(local), "remote": str(remote)}
        for alias, local in (("one", one), ("two", two))
    ]
    config = write_config(tmp_path / "c.toml", [{"name": "here", "sync_dirs": dirs}])
    assert run_cli(capsys, "sync", "--config", str(config)).code == 0
    (one / "a.py").unlink()
    run = run_cli(capsys, "sync", "--config", str(config), "--delete", "--json")
    assert run.code == 0, run.out
    deleted = {t["alias"]: t["deleted"] for t in json.loads(run.out)["targets"]}
    assert deleted == {"one": ["a.py"], "two": []}
    assert {p.name for p in remote.rglob("*")} == {"b.py", "shared", "x.py", "y.py"}


def test_a_symlink_loop_where_a_pushed_folder_was_is_kept_and_never_opened(bed: Bed) -> None:
    shutil.rmtree(bed.remote / "old")
    os.symlink("old", bed.remote / "old")  # opening it fails (ELOOP): it must not be listed
    shutil.rmtree(bed.local / "old")
    (bed.local / "a.py").unlink()
    run, report = bed.sync("--delete", "--json")
    assert run.code == 0, run.out
    assert report["deleted"] == ["a.py"]
    assert (bed.remote / "old").is_symlink()


def test_a_link_repointed_on_the_cluster_survives_though_its_target_is_as_long(bed: Bed) -> None:
    os.symlink("run1", bed.local / "pointer")
    os.symlink("run1", bed.local / "other")
    first, _ = bed.sync()
    assert first.code == 0, first.out
    (bed.remote / "pointer").unlink()
    os.symlink("run2", bed.remote / "pointer")  # a job moved it: same length, not ours now
    (bed.local / "pointer").unlink()
    (bed.local / "other").unlink()
    run, report = bed.sync("--delete", "--json")
    assert run.code == 0, run.out
    assert report["deleted"] == ["other"]
    why = "changed on the cluster since sbatchman pushed it"
    assert report["kept_on_cluster"] == [{"path": "pointer", "why": why}]
    assert os.readlink(bed.remote / "pointer") == "run2"


def test_two_sync_dirs_of_one_folder_into_one_remote_folder_share_one_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same local and remote folder (other excludes): one record, written by each in turn.
    The second must build on what the first just wrote, not on what was there before the
    run, or it forgets every file the first recorded and --delete silently removes nothing."""
    local = make_tree(tmp_path / "proj", {"a.py": "a\n", "b.py": "b\n", "y.py": "y\n"})
    remote = tmp_path / "cluster" / "proj"
    dirs = [
        {"alias": "all", "local": str(local), "remote": str(remote)},
        {"alias": "noy", "local": str(local), "remote": str(remote), "excludes": ["y.py"]},
    ]
    config = write_config(tmp_path / "c.toml", [{"name": "here", "sync_dirs": dirs}])
    assert run_cli(capsys, "sync", "--config", str(config)).code == 0
    (local / "a.py").unlink()
    run = run_cli(capsys, "sync", "--config", str(config), "--delete", "--json")
    assert run.code == 0, run.out
    deleted = {t["alias"]: t["deleted"] for t in json.loads(run.out)["targets"]}
    assert deleted == {"all": ["a.py"], "noy": []}
    assert {p.name for p in remote.iterdir()} == {"b.py", "y.py"}
