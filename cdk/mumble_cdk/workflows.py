"""The dispatcher: the package's state machines, started by new objects.

The workflows are described once, by ``mumble.backends.aws.workflows``, in
Amazon States Language. They are deployed as the package writes them, each
function ARN left as a ``${key}`` placeholder that CloudFormation fills in
(``DefinitionSubstitutions``), so the retries, timeouts and concurrency
limits in force are exactly the package's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from .failure_queue import FailureQueue
from .functions import FunctionSettings, MumbleFunction

Definition = dict[str, Any]
StateMachines = Callable[[Mapping[str, str]], Mapping[str, Definition]]

#: How long a step may run when its task sets no ``TimeoutSeconds``.
DEFAULT_STEP_TIMEOUT = Duration.minutes(5)
#: Lambda's own ceiling.
MAX_STEP_TIMEOUT = 900
FAILED_STATUSES = ["FAILED", "TIMED_OUT", "ABORTED"]
#: How long EventBridge keeps trying to start an execution (throttled, say)
#: before the object's event goes to the failure queue.
START_RETRIES = 8
START_MAX_AGE = Duration.hours(24)
_LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
#: The fields of an EventBridge pattern, as ``events.EventPattern`` names them.
_EVENT_FIELDS = {
    field: field.replace("-", "_")
    for field in (
        "source",
        "detail-type",
        "detail",
        "account",
        "region",
        "resources",
        "id",
        "time",
        "version",
    )
}


class WorkflowError(ValueError):
    """A definition this app does not know how to deploy."""


def substitution_key(step: str) -> str:
    """The ``DefinitionSubstitutions`` key that stands for a step's function."""
    return re.sub(r"[^A-Za-z0-9_]", "_", step) + "FunctionArn"


def placeholders(steps: Sequence[str]) -> dict[str, str]:
    """What the package is given for function ARNs: ``${key}`` per step."""
    return {step: "${" + substitution_key(step) + "}" for step in steps}


def task_states(definition: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every Task state, inside Map and Parallel states too."""
    for state in definition.get("States", {}).values():
        if state.get("Type") == "Task":
            yield state
        for inner in (state.get("ItemProcessor"), state.get("Iterator")):
            if inner:
                yield from task_states(inner)
        for branch in state.get("Branches", ()):
            yield from task_states(branch)


def invoked_steps(definition: Mapping[str, Any], steps: Sequence[str]) -> set[str]:
    """The steps whose functions the definition calls; refuse other integrations.

    Any other service integration would need a grant this app does not give,
    so it fails the synthesis instead of the first execution.
    """
    marks = placeholders(steps)
    found = set()
    for task in task_states(definition):
        text = json.dumps(task)
        named = {step for step, mark in marks.items() if mark in text}
        resource = task.get("Resource", "")
        if not named or not (
            resource.startswith(_LAMBDA_INVOKE) or resource in marks.values()
        ):
            raise WorkflowError(f"a task calls something but a step: {resource}")
        found |= named
    return found


def step_timeout(definitions: Mapping[str, Definition], step: str) -> Duration:
    """The longest time any task gives the step; Lambda stops it there too."""
    mark = placeholders([step])[step]
    seconds = [
        int(task["TimeoutSeconds"])
        for definition in definitions.values()
        for task in task_states(definition)
        if mark in json.dumps(task) and "TimeoutSeconds" in task
    ]
    if not seconds:
        return DEFAULT_STEP_TIMEOUT
    return Duration.seconds(min(max(seconds), MAX_STEP_TIMEOUT))


def event_pattern(pattern: Mapping[str, Any]) -> events.EventPattern:
    """The package's pattern (a JSON-shaped dict) as CDK takes it."""
    unknown = set(pattern) - set(_EVENT_FIELDS)
    if unknown:
        raise WorkflowError(f"unknown event pattern fields: {sorted(unknown)}")
    return events.EventPattern(
        **{_EVENT_FIELDS[name]: value for name, value in pattern.items()}
    )


class DispatcherWorkflows(Construct):
    """One function per step, the state machines, and the rules starting them.

    ``failures`` receives both the events a rule could not deliver and the
    end of every failed, timed-out or aborted execution.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        functions: FunctionSettings,
        handlers: Mapping[str, str],
        state_machines: StateMachines,
        machine_names: Mapping[str, str],
        event_patterns: Mapping[str, Mapping[str, Any]],
        failure_retention: Duration,
        failure_alarm_threshold: int,
    ) -> None:
        super().__init__(scope, id)
        steps = sorted(handlers)
        self.definitions = dict(state_machines(placeholders(steps)))
        self.step_functions = {
            step: MumbleFunction(
                self,
                pascal(step),
                settings=functions,
                handler=handlers[step],
                description=f"the Mumble workflow step {step}",
                timeout=step_timeout(self.definitions, step),
            )
            for step in steps
        }
        self.failures = FailureQueue(
            self,
            "Failures",
            description="Undelivered object events or failed executions",
            retention=failure_retention,
            alarm_threshold=failure_alarm_threshold,
        )
        self.state_machines: dict[str, sfn.StateMachine] = {}
        #: The steps each state machine invokes, for the stack's grants.
        self.invokes: dict[str, set[str]] = {}
        if set(machine_names) != set(self.definitions):
            raise WorkflowError("machine_names must name every workflow")
        for name, definition in self.definitions.items():
            self.invokes[name] = invoked_steps(definition, steps)
            arns = {
                substitution_key(step): self.step_functions[step].function.function_arn
                for step in sorted(self.invokes[name])
            }
            self.state_machines[name] = sfn.StateMachine(
                self,
                pascal(name),
                state_machine_name=machine_names[name],
                comment=f"Mumble's {name} workflow",
                definition_body=sfn.DefinitionBody.from_string(json.dumps(definition)),
                definition_substitutions=arns,
                # Deliveries wait for retries over days: Express stops at 5 min.
                state_machine_type=sfn.StateMachineType.STANDARD,
            )
        unknown = set(event_patterns) - set(self.state_machines)
        if unknown:
            raise WorkflowError(f"event patterns for no workflow: {sorted(unknown)}")
        self.rules = {
            name: events.Rule(
                self,
                f"Start{pascal(name)}",
                description=f"Start the {name} workflow for each new object",
                event_pattern=event_pattern(pattern),
                targets=[
                    targets.SfnStateMachine(
                        self.state_machines[name],
                        dead_letter_queue=self.failures.queue,
                        retry_attempts=START_RETRIES,
                        max_event_age=START_MAX_AGE,
                    )
                ],
            )
            for name, pattern in event_patterns.items()
        }
        self.failed_executions = events.Rule(
            self,
            "FailedExecutions",
            description="Keep the end of every failed Mumble execution",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={
                    "status": FAILED_STATUSES,
                    "stateMachineArn": [
                        machine.state_machine_arn
                        for machine in self.state_machines.values()
                    ],
                },
            ),
            targets=[targets.SqsQueue(self.failures.queue)],
        )


def pascal(name: str) -> str:
    """``translate_inbound`` -> ``TranslateInbound``, for construct ids."""
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name))
