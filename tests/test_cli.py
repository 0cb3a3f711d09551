"""The mumble command, run as a user runs it."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import unused_port

from tests.conftest import eventually
from tests.peer import Peer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "single_user.py"


def example(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the example's command line with ``args`` as they are."""
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def mumble(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return example("--data", str(data), *args)


def first_output(
    args: list[str], *, stdout: int, stderr: int = 0, cwd: Path = ROOT
) -> tuple[list[str], list[str]]:
    """Start the example with ``args``, read the first lines it prints, stop it."""
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        errors = [proc.stderr.readline() for _ in range(stderr)]
        lines = [proc.stdout.readline() for _ in range(stdout)]
    finally:
        proc.terminate()
        proc.wait(10)
    return lines, errors


def serve_carol(data: Path, port: int) -> list[str]:
    """The arguments that serve @carol on 127.0.0.1:``port``."""
    origin = f"http://127.0.0.1:{port}"
    return [
        "--data",
        str(data),
        "serve",
        "--user",
        "carol",
        "--origin",
        origin,
        "--port",
        str(port),
    ]


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    data, port = tmp_path / "data", unused_port()
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), *serve_carol(data, port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(
                f"http://127.0.0.1:{port}/.well-known/nodeinfo", timeout=1
            )
            break
        except OSError:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
    yield data, port
    proc.terminate()
    proc.wait(10)


def test_init_creates_the_user_and_prints_the_handle_and_actor(tmp_path: Path) -> None:
    result = mumble(
        tmp_path / "d", "init", "--user", "dora", "--origin", "https://Example.COM"
    )
    assert result.returncode == 0, result.stderr
    assert "@dora@example.com" in result.stdout
    assert "https://example.com/users/dora" in result.stdout
    token = tmp_path / "d" / "owner-token"
    assert token.stat().st_mode & 0o777 == 0o600 and len(token.read_text().strip()) > 30
    assert (
        json.loads((tmp_path / "d" / "config.json").read_text())["origin"]
        == "https://example.com"
    )
    assert token.read_text().strip() not in result.stdout

    again = mumble(tmp_path / "d", "init", "--user", "dora")
    assert again.returncode == 1 and "already holds" in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("init", "--user", "Not Valid!"), "username"),
        (("init", "--origin", "ftp://x"), "origin"),
        (("post", "hello"), "run 'mumble init' first"),
        (("followers",), "run 'mumble init' first"),
    ],
)
def test_mistakes_get_one_line_and_a_nonzero_exit(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = mumble(tmp_path / "d", *args)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr


def test_client_commands_say_when_the_server_is_down(tmp_path: Path) -> None:
    data = tmp_path / "d"
    assert mumble(data, "init", "--user", "dora").returncode == 0
    result = mumble(
        data, "post", "--server", f"http://127.0.0.1:{unused_port()}", "hello"
    )
    assert result.returncode == 1 and "cannot reach the server" in result.stderr


def test_post_follow_and_lists_go_through_the_running_server(
    running: tuple[Path, int],
) -> None:
    data, port = running
    posted = mumble(data, "post", "Hello <world>")
    assert posted.returncode == 0, posted.stderr
    url = posted.stdout.strip()
    assert url.startswith(f"http://127.0.0.1:{port}/users/carol/posts/")
    request = urllib.request.Request(
        url, headers={"Accept": "application/activity+json"}
    )
    note = json.loads(urllib.request.urlopen(request, timeout=5).read())
    assert note["content"] == "<p>Hello &lt;world&gt;</p>"

    followers = mumble(data, "followers")
    assert followers.returncode == 0 and followers.stdout == ""
    assert "no followers yet" in followers.stderr

    unreachable = mumble(data, "follow", "nobody@127.0.0.1:9")
    assert unreachable.returncode == 1
    assert (
        "not a public address" in unreachable.stderr or "refused" in unreachable.stderr
    )
    not_followed = mumble(data, "unfollow", "https://nowhere.example/users/x")
    assert not_followed.returncode == 1 and "does not follow" in not_followed.stderr


def test_the_default_origin_follows_the_port(tmp_path: Path) -> None:
    port = unused_port()
    lines, _ = first_output(
        ["--data", str(tmp_path / "d"), "serve", "--port", str(port)], stdout=4
    )
    assert f"created @me@localhost:{port}\n" in lines
    assert f"serving @me@localhost:{port} on http://127.0.0.1:{port}\n" in lines


def test_serving_on_a_busy_port_is_one_line_not_a_traceback(
    running: tuple[Path, int], tmp_path: Path
) -> None:
    _data, port = running
    result = mumble(tmp_path / "other", "serve", "--port", str(port))
    assert result.returncode == 1
    assert (
        f"cannot listen on 127.0.0.1:{port}" in result.stderr
        and "Traceback" not in result.stderr
    )
    assert "serving @" not in result.stdout
    # The client commands still find the server that is running.
    assert "listen" not in json.loads((tmp_path / "other" / "config.json").read_text())


def test_a_start_that_cannot_listen_leaves_the_clients_pointing_where_they_were(
    running: tuple[Path, int], tmp_path: Path
) -> None:
    data, port = running
    busy = unused_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", busy))
        taken.listen()
        result = mumble(data, "serve", "--port", str(busy))
    assert result.returncode == 1 and "cannot listen" in result.stderr
    listen = json.loads((data / "config.json").read_text())["listen"]
    assert listen == f"http://127.0.0.1:{port}"
    assert mumble(data, "followers").returncode == 0


def test_a_restart_with_another_identity_warns_and_keeps_the_first(
    running: tuple[Path, int],
) -> None:
    data, port = running
    config = json.loads((data / "config.json").read_text())
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "--data",
            str(data),
            "serve",
            "--user",
            "zed",
            "--port",
            str(port),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert "already serves @carol" in result.stderr and "ignoring zed" in result.stderr
    assert (
        json.loads((data / "config.json").read_text())["username"] == config["username"]
    )


def test_the_data_folder_may_follow_the_command_and_is_private(
    tmp_path: Path,
) -> None:
    data, port = tmp_path / "d", unused_port()
    result = example("init", "--data", str(data), "--port", str(port))
    assert result.returncode == 0, result.stderr
    assert f"created @me@localhost:{port}" in result.stdout
    # The database holds the private key: nobody but the owner may read it.
    assert data.stat().st_mode & 0o777 == 0o700
    assert (data / "mumble.sqlite3").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "data").exists()


def test_a_database_made_readable_by_others_is_made_private_on_start(
    tmp_path: Path,
) -> None:
    data = tmp_path / "d"
    assert mumble(data, "init").returncode == 0
    db = data / "mumble.sqlite3"
    db.chmod(0o644)
    [line], _ = first_output(
        ["--data", str(data), "serve", "--port", str(unused_port())], stdout=1
    )
    assert "serving @me" in line
    assert db.stat().st_mode & 0o777 == 0o600


def test_a_restart_on_another_port_says_the_ids_keep_the_first_origin(
    tmp_path: Path,
) -> None:
    data, first, second = tmp_path / "d", unused_port(), unused_port()
    assert mumble(data, "init", "--port", str(first)).returncode == 0
    [line], [warning] = first_output(
        ["serve", "--data", str(data), "--port", str(second)], stdout=1, stderr=1
    )
    assert f"serving @me@localhost:{first} on" in line
    assert f"keeps its origin http://localhost:{first}" in warning
    assert f"listens on {second}" in warning


def test_serve_loads_an_application_from_the_working_directory(
    tmp_path: Path,
) -> None:
    (tmp_path / "myapp.py").write_text(
        "from mumble import Mumble\n"
        "def create(settings):\n"
        "    print('myapp built for', settings.origin, flush=True)\n"
        "    return Mumble(settings)\n"
    )
    port = unused_port()
    # The example script puts its own folder on sys.path, not the working
    # directory, as an installed command does.
    serve = [sys.executable, str(EXAMPLE), "serve", "--port", str(port), "--app"]
    missing = subprocess.run(
        [*serve, "nosuch:create"], capture_output=True, text=True, cwd=tmp_path
    )
    assert missing.returncode == 1 and "cannot load the application" in missing.stderr
    assert not (tmp_path / "data").exists()

    lines, _ = first_output([*serve[2:], "myapp:create"], stdout=5, cwd=tmp_path)
    assert f"myapp built for http://localhost:{port}\n" in lines
    assert f"serving @me@localhost:{port} on http://127.0.0.1:{port}\n" in lines


def test_a_missing_owner_token_is_one_line_not_a_traceback(
    running: tuple[Path, int],
) -> None:
    data, _port = running
    (data / "owner-token").unlink()
    result = mumble(data, "post", "hello")
    assert result.returncode == 1
    assert "cannot read the owner token" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_body_that_cannot_be_read_is_logged_in_one_line() -> None:
    import logging

    from aiohttp.web_protocol import RequestPayloadError

    from mumble.cli import _one_line_for_bad_http

    try:
        raise RequestPayloadError("Can not decode content-encoding: gzip")
    except RequestPayloadError:
        record = logging.LogRecord(
            "aiohttp.server",
            logging.ERROR,
            __file__,
            1,
            "Unhandled exception",
            (),
            sys.exc_info(),
        )
    assert _one_line_for_bad_http(record)
    assert record.levelno == logging.INFO and record.exc_info is None
    assert record.getMessage() == (
        "a client sent a malformed request: Can not decode content-encoding: gzip"
    )


def test_a_malformed_request_is_logged_in_one_line() -> None:
    import logging

    from aiohttp.http_exceptions import BadHttpMessage

    from mumble.cli import _one_line_for_bad_http

    try:
        raise BadHttpMessage("Invalid header value char")
    except BadHttpMessage:
        record = logging.LogRecord(
            "aiohttp.server",
            logging.ERROR,
            __file__,
            1,
            "Error handling request from %s",
            ("203.0.113.9",),
            sys.exc_info(),
        )
    assert _one_line_for_bad_http(record)
    assert record.levelno == logging.INFO and record.exc_info is None
    assert record.getMessage() == (
        "203.0.113.9 sent a malformed request: Invalid header value char"
    )


async def cli(data: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        "--data",
        str(data),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_follow_following_and_unfollow_through_the_running_server(
    tmp_path: Path, peer: Peer
) -> None:
    data, port = tmp_path / "data", unused_port()
    origin = f"http://127.0.0.1:{port}"
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        *serve_carol(data, port),
        "--allow-private-addresses",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        assert server.stdout is not None
        while b"serving @carol" not in await server.stdout.readline():
            pass
        bob = peer.user("bob")

        code, out, err = await cli(data, "follow", bob.id)
        assert code == 0, err
        assert out.strip() == f"follow request sent to {bob.id}"
        await eventually(
            lambda: any(d.activity["type"] == "Follow" for d in peer.received)
        )
        [follow] = [d for d in peer.received if d.activity["type"] == "Follow"]
        assert follow.verified and follow.activity["object"] == bob.id

        accept = peer.activity(bob, "Accept", follow.activity)
        assert (await peer.send(bob, f"{origin}/users/carol/inbox", accept))[0] == 202

        async def listed() -> bool:
            code, out, _ = await cli(data, "following")
            return code == 0 and out.split() == [bob.id]

        await eventually(listed, timeout=20)

        code, out, err = await cli(data, "unfollow", bob.id)
        assert code == 0, err
        assert out.strip() == f"unfollowed {bob.id}"
        await eventually(
            lambda: any(d.activity["type"] == "Undo" for d in peer.received)
        )
        code, out, err = await cli(data, "following")
        assert (code, out) == (0, "") and "no following yet" in err
    finally:
        server.terminate()
        await server.wait()
