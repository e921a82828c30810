"""How rsync reaches a cluster: words for its -e splitter, and which paths a shell may see.

Shared by the push and the fetch, which name the cluster's folder the same way.
"""

from __future__ import annotations

import re

# Characters that cannot change meaning in a POSIX shell: the only paths an rsync without -s
# may send (it hands the remote path to the remote shell).
SHELL_SAFE = re.compile(r"^[A-Za-z0-9_./+,:=@%-]*$")


def rsh_quote(arg: str) -> str:
    """Quote one word for rsync's own -e splitter (spaces split; doubled quotes escape)."""
    if arg and re.fullmatch(r"[A-Za-z0-9_./=:@%+,-]+", arg):
        return arg
    return "'" + arg.replace("'", "''") + "'"
