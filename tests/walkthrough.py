"""Walk a Markdown page as a reader would: write its files, run its commands, compare outputs.

A page that is walked follows three conventions, all of them visible (or
invisible) to the reader as ordinary Markdown:

- A code block with a ``title="path"`` writes that file of the project;
  ``title="path (add at the end)"`` appends to it.
- A ``console`` block holds commands after ``$ ``; the lines after a command,
  up to the next one, are its expected output (stdout and stderr, as a
  terminal shows them). A command without such lines must only succeed.
- ``<!-- check: NAME -->`` asks the test to check something at that point
  (open a browser, look at the server).

:class:`Walk` runs the steps in a fresh directory with a virtual environment
that holds only what the page's ``pip install`` lines name (:func:`page_venv`),
with ``rohrpost`` taken from this checkout. The page's server (``uvicorn ...
--port 8000``) runs on a free port instead; ``127.0.0.1:8000`` in commands is
rewritten to it, and the Redis URL to the test's.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPEND = " (add at the end)"
PAGE_PORT = "8000"
PAGE_REDIS_URL = "redis://127.0.0.1:6379/0"

_BLOCK = re.compile(
    r'^```(?P<lang>[\w-]*)(?: title="(?P<title>[^"]+)")?\n(?P<body>.*?)^```$'
    r"|<!-- check: (?P<check>[\w-]+) -->",
    flags=re.MULTILINE | re.DOTALL,
)


@dataclass(frozen=True)
class Step:
    """One thing the reader does.

    Attributes:
        kind: ``"write"``, ``"append"``, ``"run"`` or ``"check"``.
        target: The file path, the command line, or the check's name.
        text: The file's text, or the command's expected output (``None``: not shown).
    """

    kind: str
    target: str
    text: str | None = None


def steps(markdown: str) -> list[Step]:
    """The steps of a page, in order."""
    found: list[Step] = []
    for match in _BLOCK.finditer(markdown):
        if match["check"]:
            found.append(Step("check", match["check"]))
        elif match["title"]:
            path = match["title"].removesuffix(APPEND)
            kind = "append" if match["title"].endswith(APPEND) else "write"
            found.append(Step(kind, path, match["body"]))
        elif match["lang"] == "console":
            found.extend(_commands(match["body"]))
    return found


def untitled_code(markdown: str) -> list[str]:
    """The Python and HTML blocks that write no file (a walked page has none)."""
    return [
        match["body"]
        for match in _BLOCK.finditer(markdown)
        if match["lang"] in ("python", "html") and not match["title"]
    ]


def _commands(console: str) -> list[Step]:
    commands: list[Step] = []
    command: str | None = None
    output: list[str] = []
    for line in [*console.splitlines(), "$ "]:
        if line.startswith("$ "):
            if command:
                commands.append(Step("run", command, "\n".join(output) if output else None))
            command, output = line[2:].strip(), []
        else:
            output.append(line)
    return commands


def output_matches(shown: str, expected: str) -> bool:
    """Whether a command's output is what the page shows; ``...`` matches anything."""
    pattern = ".*".join(re.escape(part) for part in expected.strip().split("..."))
    return re.fullmatch(pattern, shown, flags=re.DOTALL) is not None


def pip_requirements(markdown: str) -> list[str]:
    """What the page's ``pip install`` commands name, in order."""
    return [
        requirement
        for step in steps(markdown)
        if step.kind == "run" and step.target.startswith("pip install ")
        for requirement in shlex.split(step.target)[2:]
    ]


def _local(requirement: str) -> str:
    """A ``rohrpost[...]`` requirement as an editable install of this checkout."""
    if requirement == "rohrpost" or requirement.startswith("rohrpost["):
        return f"{ROOT}{requirement.removeprefix('rohrpost')}"
    return requirement


def page_venv(requirements: list[str], where: Path) -> Path:
    """A virtual environment with only ``requirements`` installed; reused while they hold.

    ``rohrpost`` is installed editable from this checkout, so the environment
    stays valid as the code changes; it is rebuilt when the requirements,
    ``pyproject.toml`` or the checkout's place change.
    """
    key = hashlib.sha256(
        "\n".join([str(ROOT), *requirements, (ROOT / "pyproject.toml").read_text()]).encode()
    ).hexdigest()
    stamp = where / "requirements.sha256"
    if stamp.exists() and stamp.read_text() == key:
        return where
    shutil.rmtree(where, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    pip = [str(where / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    for requirement in requirements:
        local = _local(requirement)
        subprocess.run([*pip, *(["-e", local] if local != requirement else [local])], check=True)
    stamp.write_text(key)
    return where


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Walk:
    """Runs a page's steps in ``project`` with the environment ``venv``.

    Args:
        project: An empty directory: the reader's working directory.
        venv: From :func:`page_venv`.
        checks: What to do at each ``<!-- check: NAME -->``.
        redis_url: Replaces the page's Redis URL in the files it writes.
        extra_env: Set in the environment of every command and server.
    """

    def __init__(
        self,
        project: Path,
        venv: Path,
        checks: dict[str, Callable[[Walk], None]],
        redis_url: str = PAGE_REDIS_URL,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.extra_env = extra_env or {}
        self.project = project
        self.venv = venv
        self.checks = checks
        self.redis_url = redis_url
        self.port = str(free_port())
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.server: subprocess.Popen[bytes] | None = None
        self.server_log = project.parent / f"{project.name}-server.log"
        self.done: list[Step] = []

    @property
    def env(self) -> dict[str, str]:
        """The reader's shell: the venv activated, none of the test run's Django settings."""
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "PYTHONHOME")
        }
        env["VIRTUAL_ENV"] = str(self.venv)
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONUNBUFFERED"] = "1"
        return {**env, **self.extra_env}

    def run(self, page_steps: list[Step]) -> None:
        """Run every step; an assertion names the step that broke."""
        try:
            for step in page_steps:
                getattr(self, f"_{step.kind}")(step)
                self.done.append(step)
        finally:
            self.stop_server()

    def _write(self, step: Step) -> None:
        path = self.project / step.target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self._localize(step.text or ""))

    def _append(self, step: Step) -> None:
        path = self.project / step.target
        assert path.exists(), f"{step.target} should exist before the page adds to it"
        with path.open("a") as file:
            file.write("\n" + self._localize(step.text or ""))

    def _check(self, step: Step) -> None:
        self.checks[step.target](self)

    def _localize(self, text: str) -> str:
        return text.replace(PAGE_REDIS_URL, self.redis_url)

    def _run(self, step: Step) -> None:
        command = step.target.replace(f"127.0.0.1:{PAGE_PORT}", f"127.0.0.1:{self.port}")
        first = shlex.split(command)[0]
        if first in ("mkdir", "cd") or command in (
            "python -m venv .venv",
            "source .venv/bin/activate",
        ):
            return  # the walk already has its directory and its environment
        if first == "pip":
            return  # installed by page_venv, from the same lines
        if first == "uvicorn":
            self.start_server(command.replace(f"--port {PAGE_PORT}", f"--port {self.port}"))
            return
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        shown = (result.stdout + result.stderr).strip()
        if step.text is None:
            assert result.returncode == 0, f"`{step.target}` failed:\n{shown}"
        else:
            assert output_matches(shown, step.text), f"`{step.target}` printed:\n{shown}"

    def start_server(self, command: str) -> None:
        """Start (or restart) the page's server and wait until it answers HTTP."""
        self.stop_server()
        with self.server_log.open("ab") as log:
            self.server = subprocess.Popen(
                shlex.split(command),
                cwd=self.project,
                env=self.env,
                executable=str(self.venv / "bin" / shlex.split(command)[0]),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.server.poll() is None, f"`{command}` exited:\n{self.log()}"
            try:
                # S310: the URL is http://127.0.0.1, built here.
                with urllib.request.urlopen(self.base_url + "/", timeout=2):  # noqa: S310
                    return
            except urllib.error.HTTPError:
                return  # an answer all the same (the README's project has no page at /)
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"`{command}` did not answer within 30 s:\n{self.log()}")

    def stop_server(self) -> None:
        """Stop the server as Ctrl-C would."""
        if self.server is None:
            return
        self.server.send_signal(signal.SIGINT)
        try:
            self.server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()
        self.server = None

    def log(self) -> str:
        """What the server printed so far."""
        return self.server_log.read_text(errors="replace") if self.server_log.exists() else ""
