"""Serve the demo in several processes: ``make demo WORKERS=2 REDIS_URL=redis://...``.

Each process is its own uvicorn, on its own port: the first on ``--port``,
the next on the port after it, and so on. One port per process (rather than
``uvicorn --workers``, whose processes share one port and take connections
in turn) lets you open one page on each process and watch an edit made on
one reach the other, which is what several processes need a shared channel
layer for. In production a reverse proxy lists these ports as one upstream,
as docs/deployment.md shows.

Several processes need ``REDIS_URL``: the in-memory channel layer lives in
one process, so a push would not reach pages served by another. Run it from
``example/``::

    python -m demo.serve --workers 2 --port 8000 --ws-max-size 262144

Options it does not know go to every uvicorn as they are. Ctrl-C (or a
``SIGTERM``) stops every process; when one exits, the others are stopped too.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

EXAMPLE_DIR = Path(__file__).resolve().parent.parent
NEEDS_REDIS = (
    "WORKERS={workers} needs REDIS_URL: the in-memory channel layer lives in one "
    "process, so an edit made on one process would never reach pages served by another.\n"
    "Start a Redis and run, for example:\n"
    "    make demo WORKERS={workers} REDIS_URL=redis://127.0.0.1:6379/0"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.serve", description=__doc__)
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--port", type=int, default=8000, help="the first process's port")
    parser.add_argument("--host", default="127.0.0.1")
    args, uvicorn_options = parser.parse_known_args(argv)
    if args.workers < 1:
        parser.error(f"WORKERS must be 1 or more, not {args.workers}")
    if args.workers > 1 and not os.environ.get("REDIS_URL"):
        print(NEEDS_REDIS.format(workers=args.workers), file=sys.stderr)
        return 2
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "--verbosity", "0"],
        cwd=EXAMPLE_DIR,
        check=True,
    )
    ports = [args.port + index for index in range(args.workers)]
    processes = [
        subprocess.Popen(  # noqa: S603 - our own interpreter running uvicorn
            [
                sys.executable,
                "-m",
                "uvicorn",
                "demo.asgi:application",
                "--host",
                args.host,
                "--port",
                str(port),
                "--lifespan",
                "off",
                *uvicorn_options,
            ],
            cwd=EXAMPLE_DIR,
        )
        for port in ports
    ]
    urls = " and ".join(f"http://{args.host}:{port}/" for port in ports)
    print(f"The demo runs in {len(ports)} processes, one page on each: {urls}", flush=True)
    return _wait(processes)


def _wait(processes: list[subprocess.Popen[bytes]]) -> int:
    """Wait until one process exits or we are told to stop; then stop them all."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    code = 0
    try:
        pid, status = os.wait()
        code = os.waitstatus_to_exitcode(status)
        print(f"Demo process {pid} exited ({code}); stopping the others.", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return code


if __name__ == "__main__":
    sys.exit(main())
