"""The reaper: a tiny process that stops a managed server's whole process group when bench dies.

PR_SET_PDEATHSIG reaches only bench's direct child; a server started through a wrapper (`bash -c
"… bench sim …"`, a script, `env`) leaves its real server running as an orphan when bench is
killed with SIGKILL. The reaper lives in its own session and holds the read end of a pipe whose
write end only bench has: when bench dies, the kernel closes it and the reaper signals the group.

    python -m bench.run.reaper PGID GRACE_S [MARK]
With MARK it also stops every process carrying that mark (bench.run.server_marks: daemons that
left the group).
stdin: b"." = bench stopped the group itself (exit quietly); EOF = bench is gone (stop the group).
"""

from __future__ import annotations

import signal
import sys

from bench.processes import stop_group_id

RELEASE = b"."


def main(argv: list[str]) -> None:
    group, grace_s = int(argv[0]), float(argv[1])
    mark = argv[2] if len(argv) > 2 else None
    # Ctrl-C in bench's terminal is bench's to handle; the reaper waits for the pipe alone.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    message = sys.stdin.buffer.read(1)
    if message != RELEASE:
        stop_group_id(group, grace_s)
        if mark:
            from bench.run.server_marks import stop_marked

            stop_marked(mark, grace_s)


if __name__ == "__main__":
    main(sys.argv[1:])
