"""One synthesis of the CDK app, shared by every test of the templates.

The app is synthesized as ``cdk synth`` would (the context of ``cdk.json``,
cdk-nag's checks on), without AWS credentials, Docker or the CDK CLI: one
App holding a production stack and a development stack with a custom
domain, so both stages and both certificate paths are covered by a single
synthesis. The Lambda dependencies are a stand-in folder marked for the
Lambda platform; bundling is otherwise the real one.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CDK_DIR = ROOT / "cdk"
sys.path.append(str(CDK_DIR))
# Node 20 still runs jsii; its end-of-life banner would fill the output.
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

CERTIFICATE_ARN = (
    "arn:aws:acm:us-east-1:123456789012:certificate/"
    "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
)
DEV_DOMAIN = "social.example.com"
STAND_IN_DEPENDENCY = "stand_in_dependency"


def cdk_context() -> dict[str, Any]:
    """The context ``cdk synth`` reads from ``cdk.json``."""
    context: dict[str, Any] = json.loads((CDK_DIR / "cdk.json").read_text())["context"]
    return context


def make_dependencies(folder: Path) -> Path:
    """A dependency folder as ``python -m mumble_cdk.bundling`` leaves it."""
    from mumble_cdk import bundling

    package = folder / STAND_IN_DEPENDENCY
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("VENDORED = True\n")
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "junk.pyc").write_bytes(b"\0")
    bundling.mark(folder)
    return folder


@dataclass(frozen=True)
class Synthesis:
    """What one ``app.synth()`` produced."""

    outdir: Path
    templates: dict[str, dict[str, Any]]
    metadata: dict[str, dict[str, Any]]
    stacks: dict[str, Any]
    validation_error: str | None

    def template_path(self, stage: str) -> Path:
        return self.outdir / f"{self.stacks[stage].stack_name}.template.json"


@pytest.fixture(scope="session")
def synthesis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesis]:
    import aws_cdk as cdk

    from mumble_cdk.app import add_stack, check
    from mumble_cdk.config import STAGES, CustomDomain, from_context

    base = tmp_path_factory.mktemp("cdk")
    dependencies = make_dependencies(base / "dependencies")
    outdir = base / "cdk.out"
    context = cdk_context() | {
        "stage": "prod",
        "lambdaDependencies": str(dependencies),
    }
    app = cdk.App(context=context, outdir=str(outdir))
    check(app)
    prod = from_context(app.node)
    dev = replace(
        prod,
        stage=STAGES["dev"],
        domain=CustomDomain(name=DEV_DOMAIN, certificate_arn=CERTIFICATE_ARN),
    )
    stacks = {"prod": add_stack(app, prod), "dev": add_stack(app, dev)}
    error = None
    try:
        app.synth()
    except RuntimeError as exc:
        # cdk-nag's findings fail the synthesis after the templates are
        # written; test_cdk_nag reports them, the other tests still run.
        error = str(exc)
    yield Synthesis(
        outdir=outdir,
        templates={
            stage: json.loads((outdir / f"{s.stack_name}.template.json").read_text())
            for stage, s in stacks.items()
        },
        metadata={
            stage: json.loads((outdir / f"{s.stack_name}.metadata.json").read_text())
            for stage, s in stacks.items()
        },
        stacks=stacks,
        validation_error=error,
    )


@pytest.fixture(scope="session")
def prod(synthesis: Synthesis) -> dict[str, Any]:
    return synthesis.templates["prod"]


@pytest.fixture(scope="session")
def dev(synthesis: Synthesis) -> dict[str, Any]:
    return synthesis.templates["dev"]
