"""The pages a person sees, rendered by headless Chromium."""

from __future__ import annotations

import asyncio
import shutil
import tempfile

import pytest

from mumble.jsonld import PUBLIC
from tests.conftest import MumbleServer
from tests.peer import Peer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")


async def render(url: str) -> str:
    """The DOM Chromium builds for a page, as a browser asks for it."""
    with tempfile.TemporaryDirectory() as profile:
        proc = await asyncio.create_subprocess_exec(
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--dump-dom",
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return out.decode()


async def test_the_profile_page_shows_the_account_its_posts_and_counts(
    server: MumbleServer, peer: Peer
) -> None:
    _, activity = await server.outbox(
        {"type": "Note", "content": "<p>Visible <em>post</em></p>"}
    )
    bob = peer.user("bob")
    await peer.send(
        bob,
        f"{server.origin}/inbox",
        peer.activity(bob, "Like", activity["object"]["id"], to=[PUBLIC]),
    )
    for _ in range(100):
        if (await server.fed.posts.counts(activity["object"]["id"]))["likes"]:
            break
        await asyncio.sleep(0.05)

    dom = await render(f"{server.origin}/@alice")
    assert f"@alice@{server.settings.host}" in dom
    assert "Visible <em>post</em>" in dom
    assert '<span class="likes">1 like</span>' in dom
    assert '<span class="replies">0 replies</span>' in dom
    assert '<span class="posts">1 post</span>' in dom
    assert '<span class="followers">0 followers</span>' in dom


async def test_remote_html_cannot_inject_into_the_post_page(
    server: MumbleServer,
) -> None:
    _, activity = await server.outbox(
        {
            "type": "Note",
            "content": '<p>hi</p><img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>',
        }
    )
    dom = await render(activity["object"]["id"])
    assert (
        "hi" in dom
        and "pwned" not in dom
        and "<script" not in dom.split("</head>", 1)[1]
    )
