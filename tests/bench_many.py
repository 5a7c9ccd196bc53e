"""Runs several `bench` commands in one process and prints ``[[exit code, stdout, stderr], ...]`` as JSON.

Each `bench` start imports torch (seconds on a loaded machine), so tests that need many commands in a child
process (a read-only mount namespace, a store another process writes) run them through this script:
``python tests/bench_many.py '[["report"], ["check", "--baseline", "b.json"]]'``. A crash that is not a
``SystemExit`` is exit code 99 with its repr on stderr, so a traceback cannot pass for a clean error.
"""

import contextlib
import io
import json
import os
import sys


def run_all(commands: list[list[str]]) -> list[list]:
    from bench.cli import main

    done = []
    for argv in commands:
        out, err, code = io.StringIO(), io.StringIO(), 0
        sys.argv = ["bench", *argv]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exit_info:
                code = exit_info.code
            except BaseException as crash:  # noqa: BLE001 - reported, never swallowed silently
                code, err = 99, io.StringIO(f"Traceback: {crash!r}")
        done.append([code, out.getvalue(), err.getvalue()])
    return done


if __name__ == "__main__":
    # run as a script, its folder (tests/) comes first on sys.path, and tests/bench would shadow the bench package
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path = [entry for entry in sys.path if entry and os.path.abspath(entry) != here]
    print(json.dumps(run_all(json.loads(sys.argv[1]))))
