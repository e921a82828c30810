"""How the file list reaches rsync: on its stdin (`--files-from`), as arguments in batches, or
as the rules that make rsync's own walk choose it.

rsync reads a `--files-from` list one byte per read() (each after a poll()): 1.3 MB of names,
a 50,000-file tree, costs the sending rsync about 1.8 s of system time, longer than the whole
transfer of an unchanged tree takes plain `rsync -a`. The same names as arguments cost nothing
to read. `--files-from` implies `-R -d`, so `-R -d ./name...` (run from the folder) sends
exactly the same entries; each name starts with `./`, so one with a `:` is never a host and one
with a `-` never an option. Arguments need the list before rsync starts (no overlap of the
cluster look with rsync's connect) and must fit in ARG_MAX, so they are used only for long
lists, in as many rsync runs as the limit needs.

Given names, rsync lists them all before it sends a byte (0.3 s for 50,000 names at 20 ms); a
recursive rsync sends while it lists. So where the config's excludes alone chose the entries
(Selection.rules: no ignore file took part) and the cluster lacks most of the folders (a first
push), a long list goes as those excludes plus one anchored exclude per path the guard keeps,
and rsync walks: the same set, as the fetch's
`--exclude` rules are (tests/test_rsync_fetch_oracle.py). What differs is only what was made
since the walk, which rsync then sends too, judged by the same excludes.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Collection, Iterable, Iterator

from sbatchman.selection.walk import Selection

# From this many bytes of names on, arguments win: below it, reading the list costs less than
# the look at the cluster that would then no longer overlap rsync's connect (one round trip).
BY_ARGUMENT_FROM = 128 << 10
# Of what ARG_MAX leaves after the environment, what one rsync's names may take (each with its
# pointer, 8 bytes): rsync's own flags, the -e line and the two paths need a few KiB of the
# rest. Every extra batch is one more rsync start and a drained pipeline (0.15 s at 20 ms).
SHARE = 0.95
# Whether a long list goes as rules (walk_rules): None, where the cluster lacks most of its
# folders; tests set True or False to hold each way to the same promises.
WALKS: bool | None = None


def by_argument(selection: Selection, *, login_folder: bool) -> bool:
    """Whether this list goes as arguments. Not into the login folder: there the first name
    must not make rsync send "." (the login folder keeps its own mode), and only `./` does."""
    if login_folder:
        return False
    size = 0
    for entry in selection.entries:
        size += len(entry.path) + 1
        if size >= BY_ARGUMENT_FROM:
            return True
    return False


def batches(listed: bytes, limit: int | None = None) -> Iterator[list[str]]:
    """The NUL-separated `listed` as `./name` arguments, cut where ARG_MAX would be passed.

    Parents come before their children in the list (the walk's order), and rsync -R makes any
    parent a later batch needs, so the cut may fall anywhere.
    """
    if limit is None:
        limit = int(room() * SHARE)
    ascii = listed.isascii()  # then a name's length in characters is its length in bytes
    batch: list[str] = []
    size = 0
    for name in os.fsdecode(listed).split("\0"):
        if not name:
            continue
        arg = name if name.startswith("./") else "./" + name
        # the string, its NUL, its pointer in argv
        cost = (len(arg) if ascii else len(os.fsencode(arg))) + 1 + 8
        if batch and size + cost > limit:
            yield batch
            batch, size = [], 0
        batch.append(arg)
        size += cost
    if batch:
        yield batch


def in_halves(run: Callable[[list[str]], None], words: list[str]) -> None:
    """`run` the batch; one the kernel still finds too long (E2BIG: the environment grew
    after the cut, or a system counts differently) goes as two halves instead, and so on."""
    try:
        run(words)
    except OSError as err:
        if err.errno != errno.E2BIG or len(words) < 2:
            raise
        half = len(words) // 2  # parents first: rsync -R makes those a later half needs
        in_halves(run, words[:half])
        in_halves(run, words[half:])


def room() -> int:
    """ARG_MAX less what this process's environment (which rsync inherits) takes of it: the
    kernel counts every argument and environment string, its NUL and its pointer together."""
    used = sum(len(k) + len(v) + 2 + 8 for k, v in os.environb.items())
    return max(arg_max() - used, 4096)


def arg_max() -> int:
    """The kernel's limit on one command's arguments and environment together."""
    try:
        value = os.sysconf("SC_ARG_MAX")
    except (OSError, ValueError):
        value = -1
    return value if value > 0 else 128 << 10  # POSIX guarantees at least 4 KiB; be modest


def walk_rules(
    selection: Selection, kept: list[str], there: Collection[str] = ()
) -> list[str] | None:
    """The `--exclude` arguments that make rsync's walk of the folder choose `selection`
    without `kept` (each with all below it), or None when only its names can say what goes,
    or when they go faster: where the cluster already has most of the folders (`there`, from
    the guard's look), the whole list given at once lets rsync check every file with one round
    trip, where its walk waits for one per folder (50,000 unchanged files in 1,000 folders at
    20 ms: 2.4 s walking, 1.2 s given the names)."""
    if WALKS is False or selection.rules is None or selection.changed:
        return None
    if WALKS is None:
        folders = [e.path for e in selection.entries if e.kind == "dir"]
        if 2 * sum(1 for path in folders if path in there) >= len(folders):
            return None
    return [f"--exclude={rule.pattern}" for rule in selection.rules] + [
        f"--exclude={literal_exclude(path)}" for path in kept
    ]


def gone_since(selection: Selection, sent: Iterable[str]) -> list[str]:
    """The entries a walking rsync did not send that are no longer here: deleted after the
    walk, which rsync given the names says itself (exit 23), and a walking one cannot."""
    landed = set(sent)
    root = os.fspath(selection.root)
    gone = []
    for entry in selection.entries:
        if entry.path not in landed:
            try:
                os.lstat(f"{root}/{entry.path}")
            except (FileNotFoundError, NotADirectoryError):
                gone.append(entry.path)
    return gone


def literal_exclude(path: str) -> str:
    """An rsync exclude matching exactly `path` below the transfer's root: wildcard
    characters are escaped only where the pattern has any (rsync then reads escapes)."""
    if any(c in path for c in "*?["):
        path = re.sub(r"([*?\[\\])", r"\\\1", path)
    return "/" + path
