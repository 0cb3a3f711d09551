"""The public face: CloudFront in front of the API and the media files."""

from __future__ import annotations

from aws_cdk import Annotations, Stack, Token
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_s3 as s3
from constructs import Construct

from .config import ConfigError, CustomDomain
from .package import ORIGIN_SECRET, ORIGINAL_DATE, ORIGINAL_HOST

#: CloudFront sends the API's own host name to API Gateway, and a signature
#: covers the Host and Date the peer sent: both are passed on in headers of
#: our own. Whatever the viewer put in those headers is overwritten or
#: dropped; the adapter trusts them only beside the origin secret.
FORWARD_VIEWER_HEADERS = f"""\
function handler(event) {{
  var headers = event.request.headers;
  var copies = {{ host: "{ORIGINAL_HOST.lower()}", date: "{ORIGINAL_DATE.lower()}" }};
  for (var name in copies) {{
    if (headers[name]) {{
      headers[copies[name]] = {{ value: headers[name].value }};
    }} else {{
      delete headers[copies[name]];
    }}
  }}
  return event.request;
}}
"""


class Distribution(Construct):
    """The API at every path but the media prefix, which is read from the bucket.

    The bucket is reached with origin access control; the stack grants the
    distribution read access to the media prefix only.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        api: apigateway.RestApi,
        media_bucket: s3.IBucket,
        media_prefix: str,
        origin_secret: str,
        access_logs: s3.IBucket,
        domain: CustomDomain | None,
    ) -> None:
        super().__init__(scope, id)
        self.forward_viewer_headers = cloudfront.Function(
            self,
            "ForwardViewerHeaders",
            code=cloudfront.FunctionCode.from_inline(FORWARD_VIEWER_HEADERS),
            runtime=cloudfront.FunctionRuntime.JS_2_0,
            comment="Pass the viewer's Host and Date on to the API",
        )
        api_origin = origins.RestApiOrigin(
            api, custom_headers={ORIGIN_SECRET: origin_secret}
        )
        # Referenced, not passed: given the bucket itself, CDK would let the
        # distribution read every object in it, not only the media.
        media = s3.Bucket.from_bucket_attributes(
            self,
            "MediaBucket",
            bucket_arn=media_bucket.bucket_arn,
            bucket_regional_domain_name=media_bucket.bucket_regional_domain_name,
        )
        Annotations.of(self).acknowledge_warning(
            "@aws-cdk/aws-cloudfront-origins:updateImportedBucketPolicyOac",
            "The stack grants the distribution read access to the media prefix",
        )
        self.certificate = _certificate(self, domain)
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment="Mumble",
            default_behavior=cloudfront.BehaviorOptions(
                origin=api_origin,
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
                # Responses depend on Accept, signatures and the owner's token.
                cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                # With caching off this also forwards Authorization.
                origin_request_policy=(
                    cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER
                ),
                function_associations=[
                    cloudfront.FunctionAssociation(
                        function=self.forward_viewer_headers,
                        event_type=cloudfront.FunctionEventType.VIEWER_REQUEST,
                    )
                ],
            ),
            additional_behaviors={
                f"/{media_prefix}*": cloudfront.BehaviorOptions(
                    origin=origins.S3BucketOrigin.with_origin_access_control(media),
                    viewer_protocol_policy=(
                        cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS
                    ),
                    allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                    cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                )
            },
            domain_names=[domain.name] if domain else None,
            certificate=self.certificate,
            # CloudFront's own certificate is fixed at TLSv1; only one of our
            # own can be held to TLSv1.2.
            minimum_protocol_version=(
                cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021 if domain else None
            ),
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            enable_logging=True,
            log_bucket=access_logs,
            log_file_prefix="distribution/",
        )
        #: The host name the world uses: the custom domain, or CloudFront's.
        self.domain_name = (
            domain.name if domain else self.distribution.distribution_domain_name
        )


def _certificate(
    scope: Construct, domain: CustomDomain | None
) -> acm.ICertificate | None:
    if domain is None:
        return None
    if domain.certificate_arn:
        return acm.Certificate.from_certificate_arn(
            scope, "Certificate", domain.certificate_arn
        )
    region = Stack.of(scope).region
    # CloudFront takes certificates from us-east-1 only.
    if Token.is_unresolved(region) or region != "us-east-1":
        raise ConfigError(
            "without certificateArn, deploy to us-east-1 (set the region) so the "
            "stack can create the certificate; or pass the ARN of a us-east-1 "
            "certificate"
        )
    return acm.Certificate(
        scope,
        "Certificate",
        domain_name=domain.name,
        validation=acm.CertificateValidation.from_dns(),
    )
