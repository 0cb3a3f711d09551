"""Each function's calls to AWS, recorded while it works, against its grants.

The API function and every step and statistics handler run here as in a
deployment, on one deployment's resources in moto. A handler on botocore's
``before-send`` event notes, for the function whose invocation is running,
every action and the table, object key or parameter it names. Each must be
covered by the function's entry in :data:`mumble.backends.aws.access.ACCESS`,
which is what the CDK app grants.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import pytest

from mumble.backends.aws import AwsBackend, AwsSettings, handlers, steps
from mumble.backends.aws.access import ACCESS, OBJECT_TABLE, USER_TABLE, Access
from mumble.backends.aws.api import ApiFunction
from mumble.backends.aws.bucket import inbound_key
from mumble.backends.aws.clients import _session
from mumble.backends.aws.handlers import Container
from mumble.backends.aws.steps import Step
from mumble.signatures import sign_request
from tests.aws.samples import object_created
from tests.aws.service import MotoService
from tests.aws.stream import stream_batches
from tests.aws_adapter.conftest import API_DOMAIN, json_of, needs_aws, v2_event
from tests.aws_adapter.test_api import DOMAIN, Deployment, deploy
from tests.aws_adapter.test_mumble_over_lambda import through_cloudfront
from tests.peer import Peer

pytestmark = needs_aws

RUNNING: ContextVar[str | None] = ContextVar("running", default=None)
T = TypeVar("T")

_S3_ACTIONS = {
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "DeleteObject": "s3:DeleteObject",
    "ListObjectsV2": "s3:ListBucket",
}
_TRANSACTION_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}


@dataclass(frozen=True)
class Call:
    function: str
    action: str
    resource: str


class Recorder:
    """Notes what the running function asks of S3, DynamoDB and SSM."""

    def __init__(self, environ: dict[str, str]) -> None:
        self.tables = {
            environ["MUMBLE_USER_TABLE"]: USER_TABLE,
            environ["MUMBLE_OBJECT_TABLE"]: OBJECT_TABLE,
        }
        self.bucket = environ["MUMBLE_BUCKET"]
        self.prefix = environ["MUMBLE_SSM_PREFIX"]
        self.calls: list[Call] = []

    def __call__(self, request: Any, event_name: str, **kwargs: Any) -> None:
        function = RUNNING.get()
        if function is None:
            return
        _, service, operation = event_name.split(".", 2)
        for action, resource in self._targets(service, operation, request):
            self.calls.append(Call(function, action, resource))

    def _targets(
        self, service: str, operation: str, request: Any
    ) -> Iterator[tuple[str, str]]:
        if service == "s3":
            path = unquote(urlsplit(request.url).path).lstrip("/")
            bucket, _, key = path.partition("/")
            assert bucket == self.bucket, path
            yield _S3_ACTIONS.get(operation, f"s3:{operation}"), key
        elif service == "dynamodb":
            body = json.loads(request.body or b"{}")
            if operation == "TransactWriteItems":
                for item in body["TransactItems"]:
                    [(kind, part)] = item.items()
                    yield _TRANSACTION_ACTIONS[kind], self.tables[part["TableName"]]
            elif operation == "BatchWriteItem":
                for table in body["RequestItems"]:
                    yield "dynamodb:BatchWriteItem", self.tables[table]
            else:
                yield f"dynamodb:{operation}", self.tables[body["TableName"]]
        elif service == "ssm":
            body = json.loads(request.body or b"{}")
            yield f"ssm:{operation}", body.get("Name", "")
        else:
            yield f"{service}:{operation}", ""


def allowed(access: Access, call: Call, ssm_prefix: str) -> bool:
    service = call.action.split(":", 1)[0]
    if service == "dynamodb":
        return call.action in access.tables.get(call.resource, ())
    if call.action == "s3:ListBucket":
        return access.reads_objects
    if service == "s3":
        return any(
            call.resource.startswith(prefix) and call.action in actions
            for prefix, actions in access.objects.items()
        )
    if call.action == "ssm:GetParameter":
        return access.parameters and (
            call.resource == f"{ssm_prefix}/domain"
            or call.resource.startswith(f"{ssm_prefix}/private-keys/")
        )
    return False


async def as_function(name: str, work: Callable[[], T]) -> T:
    """Run ``work`` on a thread of its own, as the function ``name``."""
    token = RUNNING.set(name)
    try:
        return await asyncio.to_thread(work)
    finally:
        RUNNING.reset(token)


async def step(
    container: Container, fn: Step, event: Any, name: str = ""
) -> dict[str, Any]:
    """One invocation of a step's function (named after the step)."""
    return await as_function(name or fn.__name__, lambda: container.invoke(fn, event))


@pytest.fixture
def deployment(
    moto_service: MotoService, monkeypatch: pytest.MonkeyPatch
) -> Deployment:
    return deploy(moto_service.url, monkeypatch)


async def test_every_call_a_function_makes_is_one_it_is_granted(
    deployment: Deployment,
) -> None:
    environ = deployment.environ | {
        "MUMBLE_ALLOW_PRIVATE_ADDRESSES": "1",
        # Its handler posts, from the function that translates inbound work.
        "MUMBLE_APPLICATION": "tests.aws.application:thankful",
    }
    recorder = Recorder(environ)
    # Clients copy the session's handlers when they are created, which the
    # functions below do at their first invocation.
    _session().register("before-send", recorder)
    peer = await Peer.start()
    api = ApiFunction(environ)
    container = Container(environ)
    backend = AwsBackend(AwsSettings.from_environ(environ))
    await backend.open()
    try:
        await scenario(deployment, environ, peer, api, container, backend)
    finally:
        await asyncio.to_thread(api.close)
        await asyncio.to_thread(container.close)
        await backend.close()
        await peer.close()
        _session().unregister("before-send", recorder)

    prefix = environ["MUMBLE_SSM_PREFIX"]
    denied = [c for c in recorder.calls if not allowed(ACCESS[c.function], c, prefix)]
    assert denied == []
    assert {c.function for c in recorder.calls} == set(ACCESS)


async def scenario(
    deployment: Deployment,
    environ: dict[str, str],
    peer: Peer,
    api: ApiFunction,
    container: Container,
    backend: AwsBackend,
) -> None:
    bob = peer.user("bob")
    # A follower, so that the post below has somewhere to go; and one whose
    # server has gone, so that a delivery fails for good.
    gone = peer.user("carol")
    peer.answer_status[urlsplit(gone.inbox).path] = 410
    for follower in (bob, gone):
        await backend.put(
            "followers",
            f"alice {follower.id}",
            {"actor": follower.id, "inbox": follower.inbox},
        )

    # The API function: discovery, a signed Follow, a post, a media form.
    def call(event: dict[str, Any]) -> dict[str, Any]:
        result = api(event)
        assert result["statusCode"] < 300, result
        return result

    def delivered(activity: dict[str, Any]) -> dict[str, Any]:
        """Bob's signed delivery to the shared inbox, as CloudFront passes it on."""
        body = json.dumps(activity).encode()
        signed = sign_request(
            "POST",
            f"https://{DOMAIN}/inbox",
            key_id=bob.key_id,
            private_key=bob.key,
            body=body,
            headers={"Content-Type": "application/activity+json"},
        )
        return v2_event("POST", "/inbox", through_cloudfront(signed), body=body)

    await as_function("api", lambda: call(v2_event("GET", "/users/alice", {})))
    follow = peer.activity(bob, "Follow", f"https://{DOMAIN}/users/alice")
    await as_function("api", lambda: call(delivered(follow)))
    owner = {
        "Host": API_DOMAIN,
        "Authorization": f"Bearer {deployment.id_token}",
        "Content-Type": "application/activity+json",
    }
    note = json.dumps({"type": "Note", "content": "to my followers"}).encode()
    await as_function(
        "api", lambda: call(v2_event("POST", "/users/alice/outbox", owner, body=note))
    )
    form = json.dumps({"mediaType": "image/png"}).encode()
    media = await as_function(
        "api",
        lambda: call(
            v2_event(
                "POST",
                "/users/alice/media",
                owner | {"Content-Type": "application/json"},
                body=form,
            )
        ),
    )
    assert json_of(media)["keyPrefix"].startswith("media/alice/")

    # The workflows: each step on the events AWS would give it.
    # The Follow (answered with an Accept), then the post's fan-out.
    for prefix, translate in (
        ("inbound/", steps.translate_inbound),
        ("outbound/tasks/", steps.translate_outbound),
    ):
        [key] = await backend.staging.keys(prefix)
        event = object_created(backend.settings.bucket, key)
        result = await step(container, translate, event)
        assert result["status"] == "done", result
    for key in await backend.staging.keys("outbound/deliver/"):
        # As the workflow hands it over: the object, and the execution.
        located = {"bucket": backend.settings.bucket, "key": key, "attempts": 0}
        located["execution"] = f"arn:aws:states:::execution:deliver:{key[-12:]}"
        expanded = await step(container, steps.expand, located)
        results = []
        for item in expanded["inboxes"]:
            pushed = await step(container, steps.push, item)
            ok = pushed["status"] == "done"
            results.append(
                {"id": item["task"]["id"], "status": "done" if ok else "failed"}
            )
        await step(
            container,
            steps.settle,
            {
                "bucket": backend.settings.bucket,
                "key": key,
                "reason": "",
                "results": results,
            },
        )
    # The peer cannot check signatures made for a host it cannot reach; what
    # matters here is that every delivery was made.
    kinds = sorted((d.path, d.activity["type"]) for d in peer.received)
    assert kinds == sorted(
        [
            (urlsplit(bob.inbox).path, "Accept"),
            # Accepted, bob's follow now names his server's shared inbox.
            ("/inbox", "Create"),
            (urlsplit(gone.inbox).path, "Create"),
        ]
    )
    assert await backend.get("followers", f"alice {gone.id}") is None

    garbage = inbound_key("inbound:garbage")
    await backend.clients.s3.put_object(
        Bucket=backend.settings.bucket, Key=garbage, Body=b"not json"
    )
    dropped = await step(
        container,
        steps.translate_inbound,
        object_created(backend.settings.bucket, garbage),
    )
    assert dropped["status"] == "drop"
    await step(container, steps.quarantine, dropped)

    batches = await stream_batches(backend.settings)
    assert batches
    for batch in batches:
        outcome = await step(container, handlers.apply_stream, batch, "statistics")
        assert outcome == {"batchItemFailures": []}
    # Bob follows; carol's server answered 410, which removed her.
    assert await backend.get("counts", "alice") == {"followers": 1, "posts": 1}

    # A like, which the application answers with a post of its own.
    [post] = [r.key for r in await backend.query("objects")]
    like = peer.activity(bob, "Like", post)
    await as_function("api", lambda: call(delivered(like)))
    [inbound] = await backend.staging.keys("inbound/")
    located = object_created(backend.settings.bucket, inbound)
    assert (await step(container, steps.translate_inbound, located))["status"] == "done"
    [thanks] = await backend.staging.keys("outbound/tasks/")
    located = object_created(backend.settings.bucket, thanks)
    assert (await step(container, steps.translate_outbound, located))[
        "status"
    ] == "done"


@pytest.mark.parametrize("name", sorted(ACCESS))
def test_every_function_of_the_deployment_has_its_access(name: str) -> None:
    from mumble.backends.aws.workflows import STATISTICS, STEP_NAMES

    assert set(ACCESS) == {"api", *STEP_NAMES, STATISTICS}
    assert ACCESS[name].tables or ACCESS[name].objects
