"""Run one benchmark's TRL side in TRL's own virtual environment (TRL is never a scalelab dependency).

`run_in_venv(python, module, function, args, threads)` calls `module.function(*args)` (a module of
this folder, plain-data arguments and result) in the interpreter `python` and returns its result.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path


def run_in_venv(python: str, module: str, function: str, args: tuple, threads: int) -> dict:
    code = (f"import sys, json; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"from {module} import {function}; print(json.dumps({function}(*{args!r})))")  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        raise SystemExit(f"TRL worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
