"""The AWS deployment of Mumble, as a CDK app (entry point: ``cdk/app.py``)."""
