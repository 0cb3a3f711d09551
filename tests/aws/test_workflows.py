"""The generated state machines, executed by moto's Step Functions interpreter.

moto runs Lambda functions without Docker, so the functions here are stubs:
each returns its input unless an answer was queued for it. The steps' real
code is tested in-process (test_handlers.py); here the point is what the
state machines do with the steps' answers: Map and its concurrency, Retry,
Catch, Wait, and the data each state hands to the next.
"""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from collections import Counter
from typing import Any

import pytest

from mumble.backends.aws.bucket import STAGED_PREFIXES
from mumble.backends.aws.workflows import (
    PERMANENT_ERROR,
    STATISTICS,
    STEP_NAMES,
    TRANSIENT_AWS_ERROR,
    TRANSIENT_ERROR,
    WORKFLOW_NAMES,
    RetryPolicy,
    event_patterns,
    handler_names,
    state_machines,
    stream_filter,
)

from .samples import object_created
from .service import ACCOUNT, BUCKET, REGION, MotoService

FAST_RETRY = RetryPolicy(
    interval_seconds=1,
    backoff_rate=2.0,
    max_attempts=2,
    max_delay_seconds=10,
    jitter=False,
)
FUNCTIONS = {
    name: f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}" for name in STEP_NAMES
}


def test_every_step_needs_a_function() -> None:
    partial = {k: v for k, v in FUNCTIONS.items() if k != "push"}
    with pytest.raises(ValueError, match="push"):
        state_machines(partial)


def test_definitions_call_only_the_given_functions() -> None:
    machines = state_machines(FUNCTIONS)
    assert sorted(machines) == sorted(WORKFLOW_NAMES)
    text = json.dumps(machines)
    resources = {part.split('"')[0] for part in text.split('"Resource": "')[1:]}
    assert resources == set(FUNCTIONS.values())


def _tasks(states: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for state in states.values():
        if state["Type"] == "Task":
            found.append(state)
        for branch in state.get("Branches", []):
            found += _tasks(branch["States"])
        if "ItemProcessor" in state:
            found += _tasks(state["ItemProcessor"]["States"])
    return found


def test_every_step_and_every_execution_has_a_timeout() -> None:
    for name, machine in state_machines(FUNCTIONS).items():
        assert 0 < machine["TimeoutSeconds"] <= 7 * 86400, name
        tasks = _tasks(machine["States"])
        assert tasks, name
        for task in tasks:
            assert 0 < task["TimeoutSeconds"] <= 900, (name, task["Resource"])
            retried = {e for r in task["Retry"] for e in r["ErrorEquals"]}
            assert "States.Timeout" in retried, (name, task["Resource"])
            assert TRANSIENT_AWS_ERROR in retried, (name, task["Resource"])


def test_the_transient_aws_error_is_named_as_lambda_reports_it() -> None:
    from mumble.backends.aws.handlers import TransientAwsError

    # Lambda's Python runtime names an unhandled error by its class.
    assert TransientAwsError.__name__ == TRANSIENT_AWS_ERROR


def test_handlers_of_every_step_exist() -> None:
    from mumble.backends.aws import handlers

    names = handler_names()
    assert set(names) == {*STEP_NAMES, STATISTICS}
    for step, path in names.items():
        module, _, function = path.rpartition(".")
        assert module == handlers.__name__
        assert callable(getattr(handlers, function)), step


def test_event_patterns_name_each_staged_prefix() -> None:
    patterns = event_patterns("media-bucket")
    for workflow in WORKFLOW_NAMES:
        detail = patterns[workflow]["detail"]
        assert detail["object"]["key"] == [{"prefix": STAGED_PREFIXES[workflow]}]
        assert detail["bucket"] == {"name": ["media-bucket"]}
    assert "bucket" not in event_patterns()["inbound"]["detail"]


def test_the_stream_filter_passes_counted_namespaces_only() -> None:
    names = stream_filter()["dynamodb"]["Keys"]["pk"]["S"]
    assert "followers" in names and "reactions" in names
    assert "counts" not in names and "stream-records" not in names


# executions in moto


class Workflows:
    """The state machines deployed in moto, with stub Lambda functions."""

    def __init__(self, service: MotoService) -> None:
        self.service = service
        self.sfn = service.client("stepfunctions")
        iam = service.client("iam")
        role = iam.create_role(RoleName="mumble-steps", AssumeRolePolicyDocument="{}")
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr(
                "stub.py", "def handle(event, context):\n    return event\n"
            )
        lambdas = service.client("lambda")
        self.functions = {
            name: lambdas.create_function(
                FunctionName=name,
                Runtime="python3.11",
                Role=role["Role"]["Arn"],
                Handler="stub.handle",
                Code={"ZipFile": code.getvalue()},
            )["FunctionArn"]
            for name in STEP_NAMES
        }
        definitions = state_machines(
            self.functions, delivery_retry=FAST_RETRY, max_concurrency=2
        )
        self.machines = {
            name: self.sfn.create_state_machine(
                name=name,
                definition=json.dumps(definition),
                roleArn=role["Role"]["Arn"],
            )["stateMachineArn"]
            for name, definition in definitions.items()
        }

    def run(self, workflow: str, event: dict[str, Any]) -> Execution:
        # Executions started by EventBridge have names of their own.
        arn = self.sfn.start_execution(
            stateMachineArn=self.machines[workflow],
            name=uuid.uuid4().hex,
            input=json.dumps(event),
        )["executionArn"]
        deadline = time.monotonic() + 60
        while (described := self.sfn.describe_execution(executionArn=arn))[
            "status"
        ] == "RUNNING":
            assert time.monotonic() < deadline, "the execution did not end"
            time.sleep(0.05)
        history = self.sfn.get_execution_history(executionArn=arn, maxResults=1000)
        return Execution(described, history["events"], self.functions)


class Execution:
    def __init__(
        self,
        described: dict[str, Any],
        events: list[dict[str, Any]],
        functions: dict[str, str],
    ) -> None:
        self.arn = described["executionArn"]
        self.status = described["status"]
        self.output = json.loads(described.get("output") or "null")
        self.events = events
        self.functions = functions

    def calls(self, step: str) -> list[tuple[float, dict[str, Any]]]:
        """When each invocation of ``step`` was scheduled, and its input."""
        return [
            (
                e["timestamp"].timestamp(),
                json.loads(e["lambdaFunctionScheduledEventDetails"]["input"]),
            )
            for e in self.events
            if e["type"] == "LambdaFunctionScheduled"
            and e["lambdaFunctionScheduledEventDetails"]["resource"]
            == self.functions[step]
        ]

    def entered(self, state: str) -> list[dict[str, Any]]:
        return [
            json.loads(details["input"])
            for e in self.events
            for key, details in e.items()
            if key == "stateEnteredEventDetails" and details["name"] == state
        ]

    def most_iterations_at_once(self) -> int:
        running = most = 0
        for event in self.events:
            if event["type"] == "MapIterationStarted":
                running += 1
                most = max(most, running)
            elif event["type"] in ("MapIterationSucceeded", "MapIterationFailed"):
                running -= 1
        return most


@pytest.fixture
def workflows(aws_settings: Any, moto_service: MotoService) -> Workflows:
    return Workflows(moto_service)


def item(inbox: str, status: str, reason: str = "") -> dict[str, Any]:
    """A Map item; the stub push returns it, so ``status`` is its outcome."""
    task = {"id": f"deliver:{inbox}", "kind": "deliver", "payload": {"inbox": inbox}}
    return {"inbox": inbox, "task": task, "status": status, "reason": reason}


def test_deliver_maps_over_inboxes_retrying_transient_and_catching_permanent(
    workflows: Workflows, moto_service: MotoService
) -> None:
    key = "outbound/deliver/a/b.json"
    inboxes = [
        item("https://a.example/inbox", "done"),
        item("https://b.example/inbox", "retry", "b.example answered 503"),
        item("https://c.example/inbox", "drop", "c.example answered 410"),
        item("https://d.example/inbox", "done"),
    ]
    moto_service.queue_lambda_results(
        [{"bucket": BUCKET, "key": key, "inboxes": inboxes, "reason": ""}]
    )
    execution = workflows.run("deliver", object_created(BUCKET, key))

    assert execution.status == "SUCCEEDED"
    # Locate hands Expand the staged object the S3 event named.
    [(_, expand_input)] = execution.calls("expand")
    assert expand_input == {
        "bucket": BUCKET,
        "key": key,
        "attempts": 0,
        "execution": execution.arn,
    }
    assert execution.most_iterations_at_once() == 2

    pushes = execution.calls("push")
    per_inbox = Counter(data["inbox"] for _, data in pushes)
    # The transient failure is retried twice (MaxAttempts), the permanent one never.
    assert per_inbox == {
        "https://a.example/inbox": 1,
        "https://b.example/inbox": 3,
        "https://c.example/inbox": 1,
        "https://d.example/inbox": 1,
    }
    retried = [t for t, data in pushes if data["inbox"] == "https://b.example/inbox"]
    assert retried[1] - retried[0] >= 0.9  # IntervalSeconds
    assert retried[2] - retried[1] >= 1.9  # times BackoffRate

    [(_, settle_input)] = execution.calls("settle")
    assert settle_input["key"] == key
    assert settle_input["results"] == [
        {
            "id": "deliver:https://a.example/inbox",
            "inbox": "https://a.example/inbox",
            "status": "done",
        },
        {
            "id": "deliver:https://b.example/inbox",
            "inbox": "https://b.example/inbox",
            "status": "failed",
            "error": TRANSIENT_ERROR,
            "cause": "b.example answered 503",
        },
        {
            "id": "deliver:https://c.example/inbox",
            "inbox": "https://c.example/inbox",
            "status": "failed",
            "error": PERMANENT_ERROR,
            "cause": "c.example answered 410",
        },
        {
            "id": "deliver:https://d.example/inbox",
            "inbox": "https://d.example/inbox",
            "status": "done",
        },
    ]


def test_a_retried_push_that_then_succeeds_is_delivered(
    workflows: Workflows, moto_service: MotoService
) -> None:
    key = "outbound/deliver/a/c.json"
    pending = item("https://b.example/inbox", "pending")
    moto_service.queue_lambda_results(
        [
            {"bucket": BUCKET, "key": key, "inboxes": [pending], "reason": ""},
            pending | {"status": "retry", "reason": "timeout"},
            pending | {"status": "done"},
        ]
    )
    execution = workflows.run("deliver", object_created(BUCKET, key))

    assert execution.status == "SUCCEEDED"
    assert len(execution.calls("push")) == 2
    [(_, settle_input)] = execution.calls("settle")
    assert settle_input["results"] == [
        {"id": pending["task"]["id"], "inbox": pending["inbox"], "status": "done"}
    ]


@pytest.mark.parametrize("workflow", ["inbound", "outbound"])
def test_translate_waits_and_retries_then_quarantines_a_drop(
    workflows: Workflows, moto_service: MotoService, workflow: str
) -> None:
    key = STAGED_PREFIXES[workflow] + "t1.json"
    step = f"translate_{workflow}"
    base = {"bucket": BUCKET, "key": key}
    moto_service.queue_lambda_results(
        [
            base | {"status": "retry", "wait_seconds": 1, "attempts": 1, "reason": "x"},
            base | {"status": "drop", "attempts": 1, "reason": "forged activity"},
        ]
    )
    execution = workflows.run(workflow, object_created(BUCKET, key))

    assert execution.status == "SUCCEEDED"
    calls = execution.calls(step)
    assert [data["attempts"] for _, data in calls] == [0, 1]
    assert calls[1][0] - calls[0][0] >= 0.9  # the Wait of wait_seconds
    assert [data["wait_seconds"] for data in execution.entered("Wait")] == [1]
    [(_, quarantined)] = execution.calls("quarantine")
    assert quarantined["key"] == key
    assert quarantined["reason"] == "forged activity"


def test_translate_done_ends_without_quarantine(
    workflows: Workflows, moto_service: MotoService
) -> None:
    key = "inbound/t2.json"
    moto_service.queue_lambda_results(
        [{"bucket": BUCKET, "key": key, "status": "done", "attempts": 0, "reason": ""}]
    )
    execution = workflows.run("inbound", object_created(BUCKET, key))
    assert execution.status == "SUCCEEDED"
    assert len(execution.calls("translate_inbound")) == 1
    assert execution.calls("quarantine") == []
    assert execution.output["status"] == "done"


def test_s3_events_reach_the_workflow_of_their_prefix_only(
    workflows: Workflows, moto_service: MotoService
) -> None:
    """S3 → EventBridge with the generated patterns (SQS stands in for the target)."""
    s3 = moto_service.client("s3")
    events = moto_service.client("events")
    sqs = moto_service.client("sqs")
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={"EventBridgeConfiguration": {}},
    )
    queues = {}
    for workflow, pattern in event_patterns(BUCKET).items():
        url = sqs.create_queue(QueueName=workflow)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        events.put_rule(Name=workflow, EventPattern=json.dumps(pattern))
        events.put_targets(
            Rule=workflow,
            Targets=[{"Id": workflow, "Arn": arn["Attributes"]["QueueArn"]}],
        )
        queues[workflow] = url
    keys = {
        "inbound": "inbound/sha256-1.json",
        "outbound": "outbound/tasks/t.json",
        "deliver": "outbound/deliver/a/b.json",
    }
    for key in [*keys.values(), "media/a.png", "quarantine/inbound/x.json"]:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"{}")

    received = {}
    for workflow, url in queues.items():
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
        received[workflow] = [json.loads(m["Body"]) for m in messages["Messages"]]
    assert {
        w: [e["detail"]["object"]["key"] for e in got] for w, got in received.items()
    } == {w: [k] for w, k in keys.items()}

    # The event EventBridge passes on is a valid execution input.
    moto_service.queue_lambda_results([])
    execution = workflows.run("inbound", received["inbound"][0])
    [(_, translate_input)] = execution.calls("translate_inbound")
    assert translate_input == {"bucket": BUCKET, "key": keys["inbound"], "attempts": 0}


def test_a_second_execution_for_one_delivery_object_delivers_nothing(
    workflows: Workflows, moto_service: MotoService
) -> None:
    key = "outbound/deliver/a/b.json"
    # What expand answers an execution that finds another delivering.
    moto_service.queue_lambda_results(
        [{"bucket": BUCKET, "key": key, "inboxes": [], "duplicate": True}]
    )
    execution = workflows.run("deliver", object_created(BUCKET, key))
    assert execution.status == "SUCCEEDED"
    [(_, expand_input)] = execution.calls("expand")
    assert expand_input["execution"] == execution.arn
    assert execution.calls("push") == [] and execution.calls("settle") == []
    assert execution.entered("Duplicate")
