from __future__ import annotations

from mumble.sanitize import clean_html, clean_object, text_to_html


def test_only_harmless_tags_and_http_links_survive() -> None:
    dirty = (
        '<p onclick="x()">hi <script>alert(1)</script><a href="javascript:alert(1)">j</a>'
        '<a href="https://ok.example/">ok</a><img src="https://x/y.png"><iframe src="x"></iframe></p>'
    )
    clean = clean_html(dirty)
    for bad in ("onclick", "script", "javascript:", "<img", "<iframe"):
        assert bad not in clean
    assert (
        '<a href="https://ok.example/" rel="nofollow noopener noreferrer">ok</a>'
        in clean
    )


async def test_language_maps_and_profile_fields_are_cleaned_too() -> None:
    obj = await clean_object(
        {
            "content": "<b>a</b><script>1</script>",
            "contentMap": {"en": "<style>x</style>b"},
            "summary": "<i>s</i><img src=x onerror=y>",
            "attachment": [
                {
                    "type": "PropertyValue",
                    "name": "site",
                    "value": '<a href="data:x">d</a>',
                }
            ],
        }
    )
    assert obj["content"] == "<b>a</b>" and obj["contentMap"] == {"en": "b"}
    assert obj["summary"] == "<i>s</i>"
    assert "data:" not in obj["attachment"][0]["value"]


def test_plain_text_becomes_escaped_paragraphs_with_links() -> None:
    html = text_to_html("a <b> & c\nline\n\nhttps://x.example/p?q=1")
    assert html == (
        "<p>a &lt;b&gt; &amp; c<br>line</p>"
        '<p><a href="https://x.example/p?q=1">https://x.example/p?q=1</a></p>'
    )


async def test_text_too_large_or_too_marked_up_is_refused_before_sanitising() -> None:
    import pytest

    from mumble.errors import BadRequest

    for content in ("x" * 100_001, "<ul>" * 5_001):
        with pytest.raises(BadRequest):
            await clean_object({"content": content})
    assert (await clean_object({"content": "<ul>" * 100}))["content"].count(
        "<ul>"
    ) == 100
