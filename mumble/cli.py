"""The ``mumble`` command: set up, serve, and act as the owner.

``init`` and ``serve`` work on the data folder directly. ``post``, ``follow``
and ``unfollow`` go through the running server's outbox with the owner's
token, as any client would; ``followers`` and ``following`` read the public
collections.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .app import Mumble
from .errors import MumbleError
from .settings import Settings

CONFIG = "config.json"
TOKEN = "owner-token"

AppFactory = Callable[[Settings], Mumble]


class CommandError(Exception):
    """A failure to report in one line, with a non-zero exit."""


def _config_path(data: Path) -> Path:
    return data / CONFIG


def load_config(data: Path) -> dict[str, Any]:
    path = _config_path(data)
    if not path.exists():
        raise CommandError(f"{data} holds no Mumble server; run 'mumble init' first")
    try:
        config: dict[str, Any] = json.loads(path.read_text())
    except ValueError as exc:
        raise CommandError(f"{path} is not valid JSON: {exc}") from exc
    return config


def save_config(data: Path, config: dict[str, Any]) -> None:
    path = _config_path(data)
    path.write_text(json.dumps(config, indent=2) + "\n")


def settings_from(
    data: Path, config: dict[str, Any], *, allow_private: bool = False
) -> Settings:
    return Settings(
        origin=config["origin"],
        data_dir=data,
        allow_private_addresses=allow_private
        or bool(config.get("allow_private_addresses")),
    )


async def _init(data: Path, username: str, origin: str, name: str) -> tuple[str, str]:
    settings = Settings(origin=origin, data_dir=data)
    fed = Mumble(settings).federation()
    await fed.open()
    try:
        user, token = await fed.users.create(username, name=name)
    finally:
        await fed.close()
    return user.username, token


def _identity(args: argparse.Namespace) -> tuple[str, str]:
    """The username and origin asked for, with defaults that follow the port."""
    port = getattr(args, "port", 8080)
    return args.user or "me", args.origin or f"http://localhost:{port}"


def cmd_init(args: argparse.Namespace) -> None:
    data: Path = args.data
    if _config_path(data).exists():
        raise CommandError(f"{data} already holds a Mumble server")
    username, origin = _identity(args)
    try:
        origin = Settings(origin=origin).origin
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    username, token = asyncio.run(_init(data, username, origin, args.name or ""))
    token_path = data / TOKEN
    token_path.write_text(token + "\n")
    os.chmod(token_path, 0o600)
    save_config(data, {"origin": origin, "username": username})
    settings = Settings(origin=origin)
    print(f"created @{username}@{settings.host}")
    print(f"actor: {origin}/users/{username}")
    print(f"owner token saved in {token_path}")


def _load_factory(spec: str) -> AppFactory:
    module_name, _, attr = spec.partition(":")
    # An installed command does not look in the working directory by itself.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
        factory = getattr(module, attr or "create")
    except (ImportError, AttributeError) as exc:
        raise CommandError(f"cannot load the application {spec!r}: {exc}") from exc
    return factory  # type: ignore[no-any-return]


def cmd_serve(args: argparse.Namespace, factory: AppFactory | None) -> None:
    from aiohttp import web

    data: Path = args.data
    if args.app:
        factory = _load_factory(args.app)
    if not _config_path(data).exists():
        cmd_init(args)
    config = load_config(data)
    for asked, kept in (
        (args.user, config["username"]),
        (args.origin, config["origin"]),
    ):
        if asked and asked.lower().rstrip("/") != kept:
            print(
                f"mumble: {data} already serves @{config['username']} at "
                f"{config['origin']}; ignoring {asked}",
                file=sys.stderr,
            )
    stale = _stale_local_port(config["origin"], args.port)
    if not args.origin and stale:
        print(
            f"mumble: {data} keeps its origin {config['origin']}; its ids and "
            f"links name port {stale}, though the server listens on {args.port}",
            file=sys.stderr,
        )
    local_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    listen = f"http://{local_host}:{args.port}"
    settings = settings_from(data, config, allow_private=args.allow_private_addresses)
    app = (factory or Mumble)(settings)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiohttp.server").addFilter(_one_line_for_bad_http)
    ready = f"serving @{config['username']}@{settings.host} on {listen}"

    def listening(_banner: str) -> None:
        # Only a server that is listening tells the client commands where
        # it is; a start that failed to bind must not.
        save_config(data, config | {"listen": listen})
        print(ready, flush=True)

    try:
        web.run_app(app.web_app(), host=args.host, port=args.port, print=listening)
    except OSError as exc:
        raise CommandError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
        ) from exc


def _stale_local_port(origin: str, port: int) -> int | None:
    """The port a local origin names when it is not the one being served on."""
    parts = urlsplit(origin)
    if parts.hostname not in ("localhost", "127.0.0.1", "::1"):
        return None
    named = parts.port or (443 if parts.scheme == "https" else 80)
    return named if named != port else None


def _one_line_for_bad_http(record: logging.LogRecord) -> bool:
    """A malformed request from the network is a line at INFO, not a traceback:
    anyone can send them, and each would otherwise fill the log."""
    from aiohttp.http_exceptions import HttpProcessingError
    from aiohttp.web_protocol import RequestPayloadError

    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, HttpProcessingError | RequestPayloadError):
        record.msg = "%s sent a malformed request: %s"
        args = record.args if isinstance(record.args, tuple) else ()
        remote = args[0] if args else None
        message = getattr(exc, "message", None) or str(exc)
        record.args = (remote or "a client", message)
        record.exc_info = None
        record.levelno, record.levelname = logging.INFO, "INFO"
    return True


def _client_target(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    config = load_config(args.data)
    server = args.server or config.get("listen")
    if not server:
        raise CommandError(
            "the server's address is unknown; "
            "start it with 'mumble serve' or pass --server"
        )
    return config, server.rstrip("/")


async def _request(
    method: str, url: str, *, token: str | None = None, body: Any = None
) -> tuple[int, Any]:
    import aiohttp

    headers = {"Accept": "application/activity+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        headers["Content-Type"] = "application/activity+json"
        data = json.dumps(body)
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session,
            session.request(method, url, data=data, headers=headers) as resp,
        ):
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, {"error": text[:200]}
    except aiohttp.ClientError as exc:
        raise CommandError(
            f"cannot reach the server at {url} (is it running? start it with "
            f"'serve'): {exc}"
        ) from exc


def _owner_post(args: argparse.Namespace, body: dict[str, Any]) -> dict[str, Any]:
    config, server = _client_target(args)
    try:
        token = (args.data / TOKEN).read_text().strip()
    except OSError as exc:
        raise CommandError(
            f"cannot read the owner token in {args.data / TOKEN}: {exc.strerror}"
        ) from exc
    url = f"{server}/users/{config['username']}/outbox"
    status, answer = asyncio.run(_request("POST", url, token=token, body=body))
    if status >= 400:
        verb = "refused" if status < 500 else "could not do it"
        raise CommandError(
            f"the server {verb} ({status}): {answer.get('error', answer)}"
        )
    return answer  # type: ignore[no-any-return]


def cmd_post(args: argparse.Namespace) -> None:
    from .sanitize import text_to_html

    text = " ".join(args.text).strip()
    if not text:
        raise CommandError("nothing to post")
    activity = _owner_post(args, {"type": "Note", "content": text_to_html(text)})
    print(activity["object"]["id"])


def cmd_follow(args: argparse.Namespace) -> None:
    activity = _owner_post(args, {"type": "Follow", "object": args.account})
    print(f"follow request sent to {activity['object']}")


def cmd_unfollow(args: argparse.Namespace) -> None:
    activity = _owner_post(
        args, {"type": "Undo", "object": {"type": "Follow", "object": args.account}}
    )
    print(f"unfollowed {activity['object']['object']}")


def cmd_list(args: argparse.Namespace) -> None:
    config, server = _client_target(args)
    url: str | None = f"{server}/users/{config['username']}/{args.command}?page=true"
    origin = config["origin"]
    listed = 0
    while url:
        status, page = asyncio.run(_request("GET", url))
        if status != 200:
            raise CommandError(
                f"the server answered {status}: {page.get('error', page)}"
            )
        for item in page.get("orderedItems", []):
            print(item)
            listed += 1
        next_url = page.get("next")
        url = (
            server + next_url[len(origin) :]
            if isinstance(next_url, str) and next_url.startswith(origin)
            else None
        )
    if not listed:
        print(f"mumble: no {args.command} yet", file=sys.stderr)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="mumble", description="A single-user ActivityPub server."
    )
    data_help = "the data folder (default: ./data or $MUMBLE_DATA)"
    top.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("MUMBLE_DATA", "data")),
        help=data_help,
    )
    # --data is taken after the command too; there it overrides the default
    # only when given.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", type=Path, default=argparse.SUPPRESS, help=data_help)
    sub = top.add_subparsers(dest="command", required=True)

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, parents=[common])

    def port(p: argparse.ArgumentParser, help_: str) -> None:
        p.add_argument("--port", type=int, default=8080, help=help_)

    def identity(p: argparse.ArgumentParser) -> None:
        p.add_argument("--user", help="the username (default: me)")
        p.add_argument(
            "--origin",
            help="the public origin, e.g. https://example.com "
            "(default: http://localhost:PORT)",
        )
        p.add_argument("--name", default="", help="the display name")

    init = command("init", "create the user, its key and the owner token")
    identity(init)
    port(init, "the port the default origin names (default: 8080)")
    serve = command("serve", "run the server (creating the user on first start)")
    identity(serve)
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)"
    )
    port(serve, "port to bind (default: 8080)")
    serve.add_argument(
        "--app", default="", help="serve another application: module:factory"
    )
    serve.add_argument(
        "--allow-private-addresses",
        action="store_true",
        help="let the server fetch from loopback and private addresses",
    )
    for name, help_ in (
        ("post", "publish a post"),
        ("follow", "follow an account"),
        ("unfollow", "stop following an account"),
    ):
        p = command(name, help_)
        p.add_argument(
            "--server", default="", help="the server's address (default: from config)"
        )
        if name == "post":
            p.add_argument("text", nargs="+")
        else:
            p.add_argument("account", help="user@host or an actor URL")
    for name in ("followers", "following"):
        p = command(name, f"list {name}, one actor URL a line")
        p.add_argument(
            "--server", default="", help="the server's address (default: from config)"
        )
    return top


def main(
    argv: Sequence[str] | None = None, *, app_factory: AppFactory | None = None
) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "init":
            cmd_init(args)
        elif args.command == "serve":
            cmd_serve(args, app_factory)
        elif args.command == "post":
            cmd_post(args)
        elif args.command == "follow":
            cmd_follow(args)
        elif args.command == "unfollow":
            cmd_unfollow(args)
        else:
            cmd_list(args)
    except (CommandError, MumbleError) as exc:
        print(f"mumble: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
