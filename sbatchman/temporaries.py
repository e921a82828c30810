"""Names of the temporary files a push writes, and which such files a push may remove.

Every file is written beside its final path under a temporary name and renamed into place, so a
killed run leaves temporaries behind. Removing them must never hurt anyone else: two runs a
moment apart, or two cluster entries that reach one shared $HOME through two login nodes, push
into one folder at the same time, and each would otherwise delete the other's file between its
last write and its rename ("cannot put the file in place: No such file"). Nothing on the
server says whether a writer is still alive, and a temporary's mtime says nothing about its age
(the source's mtime is set on it before the rename), so everything is in the name:

    .<name>.<created>-<origin>-<pid>-<push>-<check>.sbm-part

`created` is the writer's clock in seconds (hex), `origin` names the writer's machine boot and
process namespace (Linux; zeros elsewhere), `pid` its process, `push` one push, and `check` is
a hash of all the rest, the marker no user file carries by chance. A temporary is removed only
when it parses exactly (check included) and is provably abandoned: written on this machine by a
process that no longer exists, or created more than MAX_AGE_S from now. A file of any other
name, such as a user's `.x.0123abcd.sbm-part`, is never touched.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import time

SUFFIX = ".sbm-part"
MAX_AGE_S = 24 * 3600  # longer than any single upload; a killed run's leftovers wait this long
NAME_MAX = 255  # bytes in one file name on every file system a cluster is likely to have
_NO_ORIGIN = "0" * 12
_TAG = re.compile(
    r"\.(.+)\.([0-9a-f]{1,12})-([0-9a-f]{12})-([0-9a-f]{1,8})-([0-9a-f]{8})-([0-9a-f]{8})"
    + re.escape(SUFFIX),
    re.DOTALL,
)
# Room for the fixed part: two dots, the fields at their widest, their dashes, the suffix.
_FIXED = 2 + 12 + 1 + 12 + 1 + 8 + 1 + 8 + 1 + 8 + len(SUFFIX)


def origin() -> str:
    """This process's machine boot and pid namespace, hashed: pids mean the same thing only
    under the same one. Unknown (zeros) where /proc does not say, which turns the liveness
    check off."""
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as boot:
            boot_id = boot.read().strip()
        ns = os.stat("/proc/self/ns/pid")
    except OSError:
        return _NO_ORIGIN
    if not boot_id:
        return _NO_ORIGIN
    seed = boot_id + f":{ns.st_dev}:{ns.st_ino}".encode()
    return hashlib.sha256(seed).hexdigest()[:12]


def _check(unsigned: str) -> str:
    raw = unsigned.encode("utf-8", "surrogateescape")
    return hashlib.sha256(b"sbatchman temporary\0" + raw).hexdigest()[:8]


def _alive(pid: int) -> bool:
    """True unless the process surely does not exist (a reused pid only keeps a leftover)."""
    try:
        os.kill(pid, 0)
    except OSError as err:
        return err.errno != errno.ESRCH
    return True


class Temporaries:
    """The temporary names of one push, and its judgement of the ones it finds.

    The fields can be given (tests make other runs' names with them); a real push takes this
    process, this machine and, for each name, the time it is made (a push may run for long).
    """

    def __init__(
        self,
        *,
        created: int | None = None,
        pid: int | None = None,
        origin_id: str | None = None,
        push: str | None = None,
    ) -> None:
        self.created = created
        self.pid = os.getpid() if pid is None else pid
        self.origin = origin() if origin_id is None else origin_id
        self.push = secrets.token_hex(4) if push is None else push

    def name(self, final: str) -> str:
        """The temporary for `final`, its stem cut (by bytes) to fit NAME_MAX, as rsync cuts."""
        room = NAME_MAX - _FIXED
        raw = final.encode("utf-8", "surrogateescape")
        stem = final
        if len(raw) > room:
            # Long names that share their first bytes (run_000…_1, _2) must not share one
            # temporary: a hash of the whole name follows the cut.
            mark = "~" + hashlib.sha256(raw).hexdigest()[:8]
            room -= len(mark)
            while room and raw[room] & 0xC0 == 0x80:  # never cut a UTF-8 character in two
                room -= 1
            stem = raw[:room].decode("utf-8", "surrogateescape") + mark
        created = int(time.time()) if self.created is None else self.created
        unsigned = f".{stem}.{created:x}-{self.origin}-{self.pid:x}-{self.push}"
        return f"{unsigned}-{_check(unsigned)}{SUFFIX}"

    def abandoned(self, name: str, now: float | None = None) -> bool:
        """Whether `name` is a temporary nobody is writing any more, so this push may remove it."""
        tag = parse(name)
        if tag is None:
            return False
        created, origin_id, pid = tag
        now = time.time() if now is None else now
        if abs(now - created) > MAX_AGE_S:
            return True
        if origin_id == _NO_ORIGIN or origin_id != self.origin:
            return False
        return pid != os.getpid() and not _alive(pid)


def parse(name: str) -> tuple[int, str, int] | None:
    """(created, origin, pid) of a name this tool generated exactly, else None."""
    if not name.endswith(SUFFIX):
        return None
    found = _TAG.fullmatch(name)
    if found is None:
        return None
    stem, created, origin_id, pid, push, check = found.groups()
    unsigned = f".{stem}.{created}-{origin_id}-{pid}-{push}"
    if _check(unsigned) != check:
        return None
    return int(created, 16), origin_id, int(pid, 16)


def is_temporary(name: str) -> bool:
    return parse(name) is not None
