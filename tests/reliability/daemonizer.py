"""A server command that leaves a daemon behind, as a careless wrapper script does.

    DAEMONIZER_HOST=0.0.0.0 python daemonizer.py PIDFILE COMMAND...

Double-forks a daemon (setsid: its own session and group, parent gone so it is nobody's
descendant) that listens on DAEMONIZER_HOST (default 127.0.0.1; any port) and writes its pid to PIDFILE, then execs COMMAND.
"""

from __future__ import annotations

import os
import socket
import sys
import time


def _daemon(pid_path: str, host: str) -> None:
    os.setsid()
    if os.fork() > 0:
        os._exit(0)  # the middle process exits: the daemon is reparented away from the server
    listener = socket.socket()
    listener.bind((host, 0))
    listener.listen()
    with open(pid_path + ".tmp", "w") as pid_file:
        pid_file.write(str(os.getpid()))
    os.rename(pid_path + ".tmp", pid_path)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    while True:
        time.sleep(3600)


def main(argv: list[str]) -> None:
    pid_path, command = argv[0], argv[1:]
    host = os.environ.get("DAEMONIZER_HOST", "127.0.0.1")
    child = os.fork()
    if child == 0:
        _daemon(pid_path, host)
    os.waitpid(child, 0)
    deadline = time.monotonic() + 60
    while not os.path.exists(pid_path) and time.monotonic() < deadline:
        time.sleep(0.01)  # the daemon listens before the server starts
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
