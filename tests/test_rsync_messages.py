"""The one-line reasons the rsync backend gives, from rsync's and ssh's own words."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sbatchman.backends.rsync_output import Progress, failure, is_missing, records, unescape
from sbatchman.ssh.endpoint import SshOptions
from sbatchman.ssh.master import policy_argv
from sbatchman.ssh.words import cause, key_needs_passphrase
from tests.support.project import Recorder

ROOT = "/home/u/proj"


def test_exit_23_names_the_first_files_and_counts_the_rest() -> None:
    stderr = (
        "".join(
            f'rsync: [Receiver] mkstemp "{ROOT}/dir/.f{i}.txt.Ab3dE9" failed: '
            "Permission denied (13)\n"
            for i in range(5)
        )
        + "rsync error: some files/attrs were not transferred (see previous errors) (code 23)\n"
    )
    text = failure(23, stderr, stall=60, roots=(ROOT,))
    assert text == (
        "some files could not be transferred: dir/f0.txt: Permission denied;"
        " dir/f1.txt: Permission denied; dir/f2.txt: Permission denied (and 2 more)"
    )


def test_exit_11_says_rsyncs_reason_and_guesses_only_without_one() -> None:
    exists = 'rsync: [Receiver] mkdir "/x/y/" failed: File exists (17)\nrsync error: ...\n'
    assert failure(11, exists, stall=60) == (
        'file I/O error on the cluster: mkdir "/x/y/" failed: File exists'
    )
    assert "disk full" in failure(11, "", stall=60)


def test_a_stall_is_named_with_its_seconds() -> None:
    assert failure(30, "rsync error: timeout in data send/receive (code 30)", stall=5) == (
        "stalled: no data moved for 5 s (--stall-timeout)"
    )
    gone = "Timeout, server 127.0.0.1 not responding.\nrsync: connection unexpectedly closed\n"
    assert failure(255, gone, stall=7).startswith("stalled: no data moved for 7 s")


def test_ssh_gives_up_only_after_rsyncs_own_timeout() -> None:
    for stall in (1, 3, 4, 5, 6, 10, 120):
        argv = policy_argv(SshOptions(stall_timeout=stall))
        setting = next(a for a in argv if a.startswith("ServerAliveInterval="))
        interval = int(setting.split("=")[1])
        assert interval * 4 > stall + 2, stall


def test_a_missing_rsync_is_recognised() -> None:
    stderr = (
        "bash: line 1: rsync: command not found\n"
        "rsync: connection unexpectedly closed (0 bytes received so far) [sender]\n"
    )
    assert is_missing(12, stderr) and not is_missing(12, "rsync: connection unexpectedly closed")
    assert "not installed" in failure(12, stderr, stall=60)
    # each login shell's words, as the clusters' shells print them (csh/tcsh are common on HPC)
    for said in (
        "sh: 1: rsync: not found",
        "zsh:1: command not found: rsync",
        "rsync: Command not found.",
        "fish: Unknown command: rsync",
    ):
        assert is_missing(127, said + "\n"), said
    assert not is_missing(127, "sh: 1: ssh-helper: not found\n")


def test_the_accept_new_hint_is_not_offered_when_the_flag_was_given() -> None:
    stderr = "No ED25519 host key is known for [h]:22 and you have requested strict checking.\n"
    assert "rerun with --accept-new-host-keys" in cause(stderr)
    given = cause(stderr, accepting=True)
    assert "--accept-new-host-keys was given" in given and "rerun" not in given
    assert "rerun" not in cause("Host key verification failed.\n", accepting=True)


def test_a_missing_identity_file_is_named() -> None:
    stderr = (
        "Warning: Identity file /k/id not accessible: No such file or directory.\n"
        "u@h: Permission denied (publickey).\n"
    )
    assert cause(stderr) == "authentication failed: the identity file /k/id does not exist"


def test_an_encrypted_key_is_told_from_a_plain_one(tmp_path: Path) -> None:
    for name, passphrase in (("plain", ""), ("locked", "secret")):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(tmp_path / name)],
            check=True,
        )
    assert key_needs_passphrase(tmp_path / "locked")
    assert not key_needs_passphrase(tmp_path / "plain")
    assert not key_needs_passphrase(tmp_path / "missing")


def test_records_split_at_newlines_and_progress_returns_only() -> None:
    chunks = [b">f+++++++++ 3 new\\#012li", b"ne\n\r   1,024  50%  1.00kB/s  0:00:00  \r"]
    chunks += [b"   2,048 100%   20.91MB/s    0:00:01 (xfr#1, to-chk=0/1)\n"]
    lines = list(records(iter(chunks)))
    assert lines == [
        b">f+++++++++ 3 new\\#012line",
        b"   1,024  50%  1.00kB/s  0:00:00  ",
        b"   2,048 100%   20.91MB/s    0:00:01 (xfr#1, to-chk=0/1)",
    ]
    got = Recorder()
    progress = Progress(got)
    progress.start("new\nline", 2048, "new")
    assert all(progress.line(line) for line in lines[1:])
    assert not progress.line(b"  12 50%x is newer")
    assert not progress.line(b" 12 50% 1kB/s 0:00:00 is newer")  # a name that starts alike
    assert got.progressed == 2048 and got.files == [("new\nline", 2048, "new")]
    assert unescape(b"a\\#012b\\#134#012") == b"a\nb\\#012"


def test_progress_of_a_file_past_100_gb_is_still_progress() -> None:
    """rsync right-aligns the byte count in 15 columns: from 100,000,000,000 bytes on the line
    starts with a digit, and the bar must keep moving (and the 100% line end the file)."""
    got = Recorder()
    progress = Progress(got)
    progress.start("ckpt.pt", 200_000_000_000, "new")
    assert progress.line(b"     99,999,999,999  49%  100.00MB/s    0:16:40  ")
    assert progress.line(b"100,000,000,000  50%  100.00MB/s    0:16:40  ")
    assert progress.line(b"200,000,000,000 100%  100.00MB/s    0:33:20 (xfr#1, to-chk=0/1)")
    assert got.progressed == 200_000_000_000
    assert got.files == [("ckpt.pt", 200_000_000_000, "new")]
