"""The API function's Lambda entry point: ``mumble.backends.aws.api.handler``.

The first event a container receives builds everything: settings from the
environment, the AWS backend, the Mumble application with Cognito owner
auth and presigned media uploads, started on an event loop the container
keeps. Later events reuse all of it. A build that fails is tried again on
the next event. Importing this module builds nothing.

The environment, besides :class:`~mumble.backends.aws.AwsSettings`' own:

==================================  =========================================
``MUMBLE_ORIGIN``                   the public origin, ``https://<domain>``;
                                    default: the domain in Parameter Store
``MUMBLE_COGNITO_USER_POOL_ID``     the owners' user pool
``MUMBLE_COGNITO_CLIENT_ID``        the app client their ID tokens are for
``MUMBLE_COGNITO_REGION``           default: the AWS region
``MUMBLE_COGNITO_ENDPOINT_URL``     where the pool's keys are fetched from;
                                    default: ``MUMBLE_AWS_ENDPOINT_URL``, else
                                    Cognito's public endpoint
``MUMBLE_ORIGIN_SECRET``            the ``X-Mumble-Origin-Secret`` CloudFront
                                    sends; unset, forwarded Host and Date are
                                    never trusted
``MUMBLE_MAX_UPLOAD_BYTES``         the largest presigned upload
==================================  =========================================
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...app import Mumble
from ...settings import Settings
from .adapter import LambdaAdapter
from .cognito import CognitoAuth, CognitoConfig
from .media import (
    DEFAULT_MAX_BYTES,
    MediaUploads,
    S3Presigner,
    UploadPolicy,
    add_media_routes,
)

if TYPE_CHECKING:
    from .settings import AwsSettings

log = logging.getLogger("mumble.aws.api")

PREFIX = "MUMBLE_"


@dataclass(frozen=True, kw_only=True)
class ApiSettings:
    """What the API function needs beyond the backend's settings."""

    origin: str | None
    user_pool_id: str
    client_id: str
    cognito_region: str
    cognito_endpoint_url: str | None = None
    origin_secret: str | None = None
    max_upload_bytes: int = DEFAULT_MAX_BYTES

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], aws: AwsSettings) -> ApiSettings:
        """Read ``MUMBLE_*`` variables; raise naming every one missing."""
        from .settings import AwsConfigurationError

        missing = [
            name
            for name in (PREFIX + "COGNITO_USER_POOL_ID", PREFIX + "COGNITO_CLIENT_ID")
            if not environ.get(name)
        ]
        if missing:
            raise AwsConfigurationError(f"set {', '.join(missing)}")
        try:
            max_upload = int(
                environ.get(PREFIX + "MAX_UPLOAD_BYTES") or DEFAULT_MAX_BYTES
            )
        except ValueError as exc:
            raise AwsConfigurationError(
                f"{PREFIX}MAX_UPLOAD_BYTES is a number of bytes"
            ) from exc
        return cls(
            origin=environ.get(PREFIX + "ORIGIN") or None,
            user_pool_id=environ[PREFIX + "COGNITO_USER_POOL_ID"],
            client_id=environ[PREFIX + "COGNITO_CLIENT_ID"],
            cognito_region=environ.get(PREFIX + "COGNITO_REGION") or aws.region,
            cognito_endpoint_url=(
                environ.get(PREFIX + "COGNITO_ENDPOINT_URL") or aws.endpoint_url
            ),
            origin_secret=environ.get(PREFIX + "ORIGIN_SECRET") or None,
            max_upload_bytes=max_upload,
        )

    def cognito(self) -> CognitoConfig:
        return CognitoConfig.for_user_pool(
            region=self.cognito_region,
            user_pool_id=self.user_pool_id,
            client_id=self.client_id,
            endpoint_url=self.cognito_endpoint_url,
        )


def s3_presigner(
    aws: AwsSettings,
) -> Callable[[], AbstractAsyncContextManager[S3Presigner]]:
    """Opens the S3 client presigned uploads are signed with (Signature V4)."""

    def open_client() -> AbstractAsyncContextManager[S3Presigner]:
        from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
        from aiobotocore.session import get_session  # type: ignore[import-untyped]

        config = AioConfig(
            # Without it botocore may sign the form with Signature V2.
            signature_version="s3v4",
            # A custom endpoint (moto) has no per-bucket host names.
            s3={"addressing_style": "path"} if aws.endpoint_url else None,
        )
        client: AbstractAsyncContextManager[S3Presigner] = get_session().create_client(
            "s3", region_name=aws.region, endpoint_url=aws.endpoint_url, config=config
        )
        return client

    return open_client


async def build_adapter(environ: Mapping[str, str]) -> LambdaAdapter:
    """The started application of the API function, from its environment."""
    from . import AwsBackend, AwsSettings

    aws = AwsSettings.from_environ(environ)
    api = ApiSettings.from_environ(environ, aws)
    backend = AwsBackend(aws)
    try:
        if api.origin is None:
            await backend.open()
        origin = await backend.origin(api.origin)
        settings = Settings(
            origin=origin,
            backend="aws",
            allow_private_addresses=aws.allow_private_addresses,
        )
        cognito = api.cognito()
        application = Mumble(
            settings, backend=backend, auth=lambda _fed: CognitoAuth(cognito)
        )
        app = application.web_app(worker=False)
        policy = UploadPolicy(bucket=aws.bucket, max_bytes=api.max_upload_bytes)
        add_media_routes(app, MediaUploads(policy, s3_presigner(aws)))
        adapter = LambdaAdapter(
            app,
            max_body_bytes=settings.max_body_bytes,
            origin_secret=api.origin_secret,
        )
        await adapter.start()
    except BaseException:
        await backend.close()
        raise
    log.info("serving %s", origin)
    return adapter


class ApiFunction:
    """One container's application: built on the first event, kept for the next.

    Lambda calls the handler synchronously, one event at a time; the event
    loop outlives each call because the application's clients are bound to it.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self._runner = asyncio.Runner()
        self._adapter: LambdaAdapter | None = None

    def __call__(self, event: Any) -> dict[str, Any]:
        return self._runner.run(self._handle(event))

    async def _handle(self, event: Any) -> dict[str, Any]:
        if self._adapter is None:
            try:
                self._adapter = await build_adapter(self.environ)
            except Exception:
                log.exception("the API function could not start")
                raise
        return await self._adapter.handle(event)

    def close(self) -> None:
        """Stop the application and its loop (for tests; Lambda just freezes)."""
        if self._adapter is not None:
            self._runner.run(self._adapter.close())
            self._adapter = None
        self._runner.close()


@functools.cache
def _function() -> ApiFunction:
    return ApiFunction(os.environ)


def handler(event: Any, context: Any) -> dict[str, Any]:
    """The Lambda handler of the API function."""
    return _function()(event)
