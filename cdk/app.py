"""The CDK app: ``cdk deploy -c stage=dev|prod`` (see the README)."""

from __future__ import annotations

import aws_cdk as cdk

from mumble_cdk.app import build

app = cdk.App()
build(app)
app.synth()
