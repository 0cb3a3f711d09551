"""The app: one stack per stage, checked by cdk-nag on every synthesis."""

from __future__ import annotations

import os

from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks

from . import nag
from .config import DeployConfig, from_context
from .stack import MumbleStack


def check(app: App) -> None:
    """Fail the synthesis on any AWS Solutions finding not acknowledged."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))


def add_stack(
    app: App, config: DeployConfig, *, name: str | None = None
) -> MumbleStack:
    """The stack of one deployment, with its accepted findings acknowledged."""
    stage = config.stage
    stack = MumbleStack(
        app,
        name or f"Mumble-{stage.name}",
        config=config,
        description=f"Mumble, an ActivityPub server ({stage.name})",
        # The CLI sets these from the profile; without them the stack is
        # environment-agnostic, as in tests.
        env=Environment(
            account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
            region=os.environ.get("CDK_DEFAULT_REGION"),
        ),
        termination_protection=stage.deletion_protection,
    )
    nag.suppress(stack)
    return stack


def build(app: App) -> MumbleStack:
    """Add the stack the context asks for (``-c stage=dev|prod``) to a checked app."""
    check(app)
    return add_stack(app, from_context(app.node))
