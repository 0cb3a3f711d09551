"""The AWS backend as the conformance suite sees it: moto, and a stream pump.

Counts on AWS come from the DynamoDB streams, so the backend under test
runs the statistics handler's function on its streams in the background,
as Lambda does in a deployment.
"""

from __future__ import annotations

from pathlib import Path

from mumble.backends import Backend, Task, TaskOutcome
from mumble.backends.aws import AwsBackend, AwsSettings
from mumble.backends.aws.counts import apply_stream
from mumble.backends.aws.steps import StepContext

from .service import require_aws_tests, shared_service
from .stream import StreamPump


async def no_tasks(task: Task) -> TaskOutcome:
    raise AssertionError(f"the statistics handler ran task {task.id}")


class PumpedAwsBackend(AwsBackend):
    """An AWS backend whose tables' streams feed the statistics handler."""

    def __init__(self, settings: AwsSettings) -> None:
        super().__init__(settings)
        self.pump: StreamPump | None = None

    async def open(self) -> None:
        await super().open()
        if self.pump is None:
            ctx = StepContext(self, no_tasks)
            self.pump = await StreamPump(
                self.settings, lambda event: apply_stream(ctx, event)
            ).start()

    async def close(self) -> None:
        if self.pump is not None:
            await self.pump.stop()
            self.pump = None
        await super().close()


async def aws(tmp_path: Path) -> Backend:
    """The conformance suite's AWS backend: skipped unless MUMBLE_TEST_AWS=moto."""
    require_aws_tests()
    return PumpedAwsBackend(shared_service().create_resources())
