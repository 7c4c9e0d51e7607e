"""Runs the real `idres` command line in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Optional

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, check: bool = True, text: bool = True, stdin: Optional[bytes | str] = None,
            timeout: float = 300, env: Optional[Mapping[str, Optional[str]]] = None,
            cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """`idres ARGS` from the project root; with ``check``, a non-zero exit fails the test with its stderr.

    ``env``: variables set (merged into this process's environment) for the command; None as a value unsets one.
    ``cwd``: run it in another directory (the project stays importable), as a user would from their own.
    """
    environ = None
    if cwd is not None:
        env = {"PYTHONPATH": str(ROOT), **(env or {})}
    if env is not None:
        environ = dict(os.environ)
        for name, value in env.items():
            if value is None:
                environ.pop(name, None)
            else:
                environ[name] = value
    # (`idres produce` through tests/tansu_worker.py, which works around a test broker telling a topic with no
    # partitions: see ``producer_waits_for_partitions`` there)
    module = "tests.tansu_worker" if args[:1] == ("produce",) else "streams.cli"
    proc = subprocess.run([sys.executable, "-m", module, *args], input=stdin, capture_output=True,
                          text=text, cwd=cwd or ROOT, timeout=timeout, env=environ)
    if check and proc.returncode != 0:
        raise AssertionError(f"idres {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Stops a child: SIGTERM, then SIGKILL if it has not ended within ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
