"""Runs the real `idres` command line in a subprocess, as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, check: bool = True, text: bool = True, stdin: Optional[bytes | str] = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """`idres ARGS` from the project root; with ``check``, a non-zero exit fails the test with its stderr."""
    proc = subprocess.run([sys.executable, "-m", "streams.cli", *args], input=stdin, capture_output=True,
                          text=text, cwd=ROOT, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"idres {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc
