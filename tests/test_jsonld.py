from __future__ import annotations

import pytest

from mumble.errors import BadRequest
from mumble.jsonld import (
    PUBLIC,
    as_list,
    bundled_context_urls,
    compact_sync,
    expand_sync,
    ids_of,
    is_public,
    normalise_addressing,
)

MASTODON_NOTE = {
    "@context": [
        "https://www.w3.org/ns/activitystreams",
        {
            "ostatus": "http://ostatus.org#",
            "sensitive": "as:sensitive",
            "toot": "http://joinmastodon.org/ns#",
            "Emoji": "toot:Emoji",
            "blurhash": "toot:blurhash",
        },
    ],
    "id": "https://mastodon.example/users/bob/statuses/1",
    "type": "Note",
    "attributedTo": "https://mastodon.example/users/bob",
    "content": "<p>hi</p>",
    "to": "https://www.w3.org/ns/activitystreams#Public",
    "tag": {
        "type": "Emoji",
        "name": ":blob:",
        "icon": {"type": "Image", "url": "https://m.example/b.png"},
    },
}


def test_single_values_and_arrays_read_the_same() -> None:
    assert as_list(None) == [] and as_list("a") == ["a"] and as_list(["a"]) == ["a"]
    assert ids_of({"id": "x"}) == ids_of(["x"]) == ["x"]


@pytest.mark.parametrize("address", [PUBLIC, "as:Public", "Public", {"id": PUBLIC}])
def test_the_three_spellings_of_public_are_the_same(address: object) -> None:
    assert is_public(address)


def test_emitted_addressing_is_arrays_with_the_full_public_iri() -> None:
    out = normalise_addressing(
        {
            "to": "as:Public",
            "cc": "https://x/f",
            "tag": {"type": "Hashtag"},
            "object": {"to": "Public"},
        }
    )
    assert (
        out["to"] == [PUBLIC]
        and out["cc"] == ["https://x/f"]
        and out["tag"] == [{"type": "Hashtag"}]
    )
    assert out["object"]["to"] == [PUBLIC]


def test_contexts_are_bundled_for_the_peers_that_use_them() -> None:
    urls = bundled_context_urls()
    for expected in (
        "https://www.w3.org/ns/activitystreams",
        "https://w3id.org/security/v1",
        "https://w3id.org/identity/v1",
        "https://w3id.org/security/data-integrity/v1",
        "https://w3id.org/security/multikey/v1",
        "https://www.w3.org/ns/did/v1",
        "http://joinmastodon.org/ns",
        "https://litepub.social/litepub/context.jsonld",
        "https://gotosocial.org/ns",
        "https://schema.org",
    ):
        assert expected in urls


def test_a_mastodon_note_expands_offline_and_compacts_with_arrays() -> None:
    expanded = expand_sync(MASTODON_NOTE)
    assert expanded[0]["@type"] == ["https://www.w3.org/ns/activitystreams#Note"]
    compacted = compact_sync(MASTODON_NOTE)
    assert compacted["to"] == [PUBLIC] and isinstance(compacted["tag"], list)


def test_an_unbundled_context_is_refused_not_fetched() -> None:
    with pytest.raises(BadRequest):
        expand_sync(
            {"@context": "https://unknown.example/context.jsonld", "type": "Note"}
        )


async def test_an_activity_in_another_context_is_brought_to_our_terms() -> None:
    from mumble.jsonld import normalise

    odd = {
        "@context": [
            "https://www.w3.org/ns/activitystreams",
            {"s": "https://www.w3.org/ns/activitystreams#"},
        ],
        "id": "https://r.example/a/1",
        "type": "Like",
        "s:actor": {"id": "https://r.example/u"},
        "object": "https://l.example/p/1",
        "to": "as:Public",
    }
    out = await normalise(odd)
    assert out["actor"] == "https://r.example/u" and out["to"] == [PUBLIC]


async def test_an_activity_in_an_unbundled_context_is_kept_as_written() -> None:
    from mumble.jsonld import normalise

    doc = {
        "@context": [
            "https://www.w3.org/ns/activitystreams",
            "https://pleroma.example/schemas/litepub-0.1.jsonld",
        ],
        "id": "https://pleroma.example/a/1",
        "type": "Like",
        "actor": "https://pleroma.example/u",
        "to": "Public",
    }
    out = await normalise(doc)
    assert out["type"] == "Like" and out["to"] == [PUBLIC]
