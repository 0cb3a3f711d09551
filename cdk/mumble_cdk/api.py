"""The HTTP API: API Gateway proxying every request to the Lambda adapter."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigateway
from constructs import Construct

from .functions import FunctionSettings, MumbleFunction


class Api(Construct):
    """A regional REST API, reached through the distribution.

    Every body is passed to the function base64-encoded, byte for byte, so
    that ``Digest`` headers still match what the peer signed. REST APIs take
    bodies of up to 10 MB, a limit that cannot be lowered; the function's
    adapter answers 413 above Mumble's own ``max_body_bytes`` (1 MiB) before
    the application reads anything.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        functions: FunctionSettings,
        handler: str,
        environment: Mapping[str, str],
        stage_name: str,
        rate_limit: int,
        burst_limit: int,
    ) -> None:
        super().__init__(scope, id)
        self.handler = MumbleFunction(
            self,
            "Handler",
            settings=functions,
            handler=handler,
            description="the Mumble HTTP API",
            # API Gateway gives up after 29 seconds anyway.
            timeout=Duration.seconds(29),
            environment=environment,
        )
        self.rest_api = apigateway.LambdaRestApi(
            self,
            "RestApi",
            handler=self.handler.function,
            proxy=True,
            description="Mumble, behind its CloudFront distribution",
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            binary_media_types=["*/*"],
            # The account-wide logging role would need a managed policy that
            # writes to every log group; the distribution logs each request.
            cloud_watch_role=False,
            deploy_options=apigateway.StageOptions(
                stage_name=stage_name,
                throttling_rate_limit=rate_limit,
                throttling_burst_limit=burst_limit,
            ),
        )
