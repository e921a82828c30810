"""The local copier, when the disk refuses one file (a full scratch disk): the others still go,
and the count says what landed.

RLIMIT_FSIZE stands in for a full disk: writes past it fail with EFBIG (Python ignores
SIGXFSZ), so the small files land and the big one cannot, as with rsync's exit 23.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from tests.support.project import write_config
from tests.support.trees import make_tree

LIMIT = 64 << 10


def test_a_push_that_runs_out_of_room_reports_the_files_that_landed(tmp_path: Path) -> None:
    small = {f"a{i}.txt": f"{i}\n" for i in range(5)} | {"z.txt": "after the big one\n"}
    proj = make_tree(tmp_path / "proj", small)
    (proj / "m.bin").write_bytes(b"\0" * (4 * LIMIT))  # fails alone; z.txt still goes
    dest = tmp_path / "dest"
    config = write_config(
        tmp_path / "c.toml",
        [
            {
                "name": "here",
                "transfer_backend": "sftp",  # a local cluster: the built-in copier
                "sync_dirs": [{"alias": "p", "local": str(proj), "remote": str(dest)}],
            }
        ],
    )

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))

    run = subprocess.run(
        [sys.executable, "-m", "sbatchman", "sync", "--config", str(config), "--json"],
        capture_output=True, text=True, check=False, preexec_fn=limit, timeout=120,
        env={**os.environ},
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    target = json.loads(run.stdout)["targets"][0]
    assert target["status"] == "failed"
    landed = sorted(p.name for p in dest.iterdir() if not p.name.startswith("."))
    assert landed == sorted(small)
    assert sorted(f["path"] for f in target["files"]) == landed
    assert target["files_sent"] == 6 and target["bytes_sent"] == sum(map(len, small.values()))
    assert "File too large" in target["error"]
    assert not [p for p in dest.iterdir() if p.name.endswith(".sbm-part")]
