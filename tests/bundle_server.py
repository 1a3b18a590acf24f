"""A pre-imported interpreter that forks one child per bundle run, so the suite pays for importing MONAI once.

Why: a tiny ``python -m monai.bundle run`` spends most of its time importing torch and MONAI (about 9 s on two
cores), and the suite makes a few hundred of them. A child forked from this server starts with those modules loaded
and otherwise runs as ``python -m monai.bundle`` would: its own working folder, environment, ``sys.path`` and
``argv``, fresh ``random`` and NumPy seeds, stdout and stderr in files, and the exit status of a real run (an
uncaught exception prints its traceback and exits 1; a signal gives ``-signum``). Runs that need another launcher
(torchrun) stay real subprocesses (``tests.helpers.run_bundle``).

Protocol, one JSON object a line: a request ``{"module", "args", "cwd", "env", "stdout", "stderr"}`` on stdin is answered by
``{"pid": ...}`` at the fork and ``{"returncode": ...}`` when the child is gone. The server performs no torch
operation, so no worker threads exist when it forks.
"""

from __future__ import annotations

import atexit
import importlib
import io
import json
import os
import random
import runpy
import sys
import threading
import traceback

#: What every bundle run imports first (``monai.bundle``'s own imports, the engines, the file formats).
PRELOAD = ["numpy", "torch", "monai", "monai.bundle.scripts", "ignite.engine", "nibabel", "PIL.Image", "fire", "tqdm"]


def _python_path(env: dict[str, str]) -> list[str]:
    return [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]


def _redirect(path: str, fd: int) -> None:
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(target, fd)
    os.close(target)


def _exit_code(error: SystemExit) -> int:
    """The status an interpreter gives ``SystemExit(code)``: None is 0, an int itself, anything else printed and 1."""
    if error.code is None:
        return 0
    if isinstance(error.code, int):
        return error.code
    print(error.code, file=sys.stderr)
    return 1


def _run_child(request: dict, base_path: list[str], server_fds: list[int]) -> None:
    """Become ``python -m <module> <args>`` in ``request["cwd"]`` with ``request["env"]``; never returns."""
    code = 1
    try:
        for fd in server_fds:
            os.close(fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        _redirect(request["stdout"], 1)
        _redirect(request["stderr"], 2)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False))
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), errors="backslashreplace", line_buffering=True)
        sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[:] = [os.getcwd(), *_python_path(request["env"]), *base_path]
        sys.argv = ["-m", *request["args"]]  # run_module puts the module's path in argv[0], as -m does
        random.seed()
        import numpy
        import torch

        numpy.random.seed()
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
        try:
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as error:
            code = _exit_code(error)
        except BaseException:
            traceback.print_exc()
            code = 1
        try:
            atexit._run_exitfuncs()
        except BaseException:
            traceback.print_exc()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    finally:
        os._exit(code)


def main() -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    base_path = [p for p in sys.path[1:] if p not in _python_path(dict(os.environ))]
    reply_fd = os.dup(1)
    os.dup2(2, 1)  # whatever the server itself prints must not reach the reply channel
    replies = os.fdopen(reply_fd, "w", buffering=1)
    replies.write(json.dumps({"ready": True, "threads": threading.active_count()}) + "\n")
    while line := sys.stdin.readline():
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _run_child(request, base_path, [reply_fd])
        replies.write(json.dumps({"pid": pid}) + "\n")
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")


if __name__ == "__main__":
    main()
