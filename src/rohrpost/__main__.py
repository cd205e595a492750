"""``python -m rohrpost``: ping, call and listen to a rohrpost server from a shell.

::

    python -m rohrpost ping   URL [--count N] [--interval S]
    python -m rohrpost call   URL TYPE [JSON]
    python -m rohrpost listen URL GROUP_OBJECT... [--count N]
    python -m rohrpost schema [--typescript] [--output FILE] [--settings MODULE]

``schema`` writes the project's API (:mod:`rohrpost.schema`) as an AsyncAPI
3.0 document in JSON, or as TypeScript declarations; it sets up Django with
``--settings`` or ``$DJANGO_SETTINGS_MODULE``. The other commands take
``--token`` (default: ``$ROHRPOST_TOKEN``), ``--timeout`` and ``--origin``.
``call`` prints the answer's data as one line of JSON; ``listen`` prints
every push as one line of JSON (``{"id", "type", "data"}``) on stdout and
what it subscribed to on stderr, so its output pipes into ``jq``. Exit
codes: see :data:`EXIT_CODES` (and ``docs/python-client.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from rohrpost.client import Client

__all__ = ["EXIT_CODES", "main"]

EXIT_OK: Final = 0
EXIT_ERROR_REPLY: Final = 1
EXIT_USAGE: Final = 2
EXIT_CONNECTION: Final = 3
EXIT_TIMEOUT: Final = 4
EXIT_INTERRUPTED: Final = 130

#: What each exit status means.
EXIT_CODES: Final = {
    EXIT_OK: "success",
    EXIT_ERROR_REPLY: "the server answered with an error",
    EXIT_USAGE: "bad arguments (or the websockets package is missing)",
    EXIT_CONNECTION: "no connection: refused, handshake failed, lost, or closed by the server",
    EXIT_TIMEOUT: "no answer in time, or fewer than --count pushes before --timeout",
    EXIT_INTERRUPTED: "interrupted with Ctrl-C",
}

DEFAULT_TIMEOUT: Final = 10.0


def _json_argument(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {text!r} ({exc})") from None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m rohrpost``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("url", help="the server's endpoint, e.g. ws://127.0.0.1:8000/ws/rohrpost/")
    common.add_argument(
        "--token",
        default=os.environ.get("ROHRPOST_TOKEN"),
        help="sent as auth_jwt with every request (default: $ROHRPOST_TOKEN)",
    )
    common.add_argument(
        "--timeout",
        type=_positive_float,
        help=f"seconds to wait for the connection and each answer (default {DEFAULT_TIMEOUT:g}); "
        "listen: also how long to listen",
    )
    common.add_argument(
        "--origin", help="the Origin header (default: the URL's http(s)://host:port)"
    )

    parser = argparse.ArgumentParser(
        prog="python -m rohrpost",
        description="Talk to a rohrpost server.",
        epilog="exit codes: "
        + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items()),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ping = commands.add_parser("ping", parents=[common], help="measure round trips")
    ping.add_argument("--count", type=_positive_int, default=4, help="how many pings (default 4)")
    ping.add_argument(
        "--interval", type=float, default=1.0, help="seconds between pings (default 1)"
    )

    call = commands.add_parser("call", parents=[common], help="make one call, print its data")
    call.add_argument("type", help="the handler's name")
    call.add_argument(
        "data", nargs="?", type=_json_argument, help="the request's data as JSON (default: none)"
    )

    listen = commands.add_parser("listen", parents=[common], help="subscribe and print pushes")
    listen.add_argument(
        "group_objects",
        nargs="+",
        type=_json_argument,
        metavar="GROUP_OBJECT",
        help='a group object as JSON, e.g. \'{"type": "board", "id": 1}\'',
    )
    listen.add_argument("--count", type=_positive_int, help="stop after N pushes")

    schema = commands.add_parser(
        "schema", help="write the project's API as AsyncAPI 3.0 (JSON) or TypeScript"
    )
    schema.add_argument(
        "--typescript", action="store_true", help="TypeScript declarations instead of AsyncAPI"
    )
    schema.add_argument("--output", "-o", help="the file to write (default: stdout)")
    schema.add_argument(
        "--settings", help="the Django settings module (default: $DJANGO_SETTINGS_MODULE)"
    )
    schema.add_argument("--title", default="rohrpost API", help="the document's title")
    schema.add_argument("--api-version", default="1.0.0", help="the API's version")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (``sys.argv[1:]`` by default) and return the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "schema":
        return _schema(args)
    try:
        from rohrpost import client  # noqa: F401 - needs the extra: say so without a traceback
    except ImportError as exc:
        print(f"rohrpost: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


async def _run(args: argparse.Namespace) -> int:
    from rohrpost.client import Client, RohrpostCallError

    timeout: float = args.timeout or DEFAULT_TIMEOUT
    listening = args.command == "listen"
    try:
        client = Client(
            args.url,
            token=args.token,
            origin=args.origin,
            call_timeout=timeout,
            open_timeout=timeout,
            ping_interval=5.0 if listening else None,
            reconnect=listening,
        )
    except ValueError as exc:  # a URL that is not ws:// or wss://
        _error(str(exc))
        return EXIT_USAGE
    try:
        await client.connect()
    except OSError as exc:
        _error(f"cannot connect to {args.url}: {exc}")
        return EXIT_CONNECTION
    try:
        if args.command == "ping":
            return await _ping(client, args.count, args.interval)
        if args.command == "call":
            _print_json(await client.call(args.type, args.data))
            return EXIT_OK
        return await _listen(client, args.group_objects, args.count, args.timeout)
    except RohrpostCallError as exc:
        _error(str(exc))
        if exc.data is not None:
            _error(f"data: {json.dumps(exc.data, ensure_ascii=False)}")
        return EXIT_ERROR_REPLY
    except TimeoutError as exc:
        _error(str(exc))
        return EXIT_TIMEOUT
    except BrokenPipeError:
        # The reader went away (`listen ... | head -1`): it has what it wanted.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:  # ConnectionLost and its kin
        _error(str(exc))
        return EXIT_CONNECTION
    finally:
        await client.close()


async def _ping(client: Client, count: int, interval: float) -> int:
    times: list[float] = []
    for sequence in range(1, count + 1):
        if sequence > 1 and interval > 0:
            await asyncio.sleep(interval)
        times.append(await client.ping() * 1000)
        print(f"pong from {client.url}: seq={sequence} time={times[-1]:.2f} ms", flush=True)
    low, mean, high = min(times), sum(times) / len(times), max(times)
    print(f"{count} pongs, min/avg/max = {low:.2f}/{mean:.2f}/{high:.2f} ms", flush=True)
    return EXIT_OK


async def _listen(
    client: Client, group_objects: list[Any], count: int | None, duration: float | None
) -> int:
    for group_object in group_objects:
        group = await client.subscribe(group_object)
        _error(f"subscribed to {group}")
    loop = asyncio.get_running_loop()
    deadline = None if duration is None else loop.time() + duration
    pushes = client.pushes()
    received = 0
    while count is None or received < count:
        remaining = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            push = await asyncio.wait_for(anext(pushes), remaining)
        except StopAsyncIteration:
            return EXIT_OK
        except asyncio.TimeoutError:
            if count is None:
                return EXIT_OK  # listened for --timeout seconds, as asked
            _error(f"{received} of {count} pushes within {duration:g} s")
            return EXIT_TIMEOUT
        _print_json(push.as_message())
        received += 1
    return EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    if args.settings:
        os.environ["DJANGO_SETTINGS_MODULE"] = args.settings
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        _error("schema needs the project's settings: --settings or $DJANGO_SETTINGS_MODULE")
        return EXIT_USAGE
    try:
        import django

        django.setup()  # imports every installed app's handlers
        from rohrpost import schema
    except ImportError as exc:
        _error(str(exc))
        return EXIT_USAGE
    if args.typescript:
        text = schema.typescript()
    else:
        document = schema.asyncapi(title=args.title, version=args.api_version)
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as output:
            output.write(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False), flush=True)


def _error(text: str) -> None:
    print(f"rohrpost: {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
