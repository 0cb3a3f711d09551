"""The owner's sign-in: a Cognito user pool and an identity pool for uploads."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from constructs import Construct

IDENTITY_SERVICE = "cognito-identity.amazonaws.com"
#: The session tag the identity pool sets from the ID token's username, and
#: that tag as an IAM policy variable: the owner's own media prefix is named
#: by it, as the presigned uploads of the API name it.
USERNAME_TAG = "username"
USERNAME = "${aws:PrincipalTag/" + USERNAME_TAG + "}"


class UserPool(Construct):
    """Accounts are created by the operator only; nobody signs up.

    ``upload_role`` is what a signed-in owner gets from the identity pool,
    with their username as the session tag :data:`USERNAME_TAG`. It starts
    with no permission: the stack grants it a write into the owner's own
    media prefix.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        mfa_required: bool,
        removal_policy: RemovalPolicy,
        deletion_protection: bool,
    ) -> None:
        super().__init__(scope, id)
        self.user_pool = cognito.UserPool(
            self,
            "Pool",
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(username=True, email=True),
            # Mumble usernames are lower case; "Alice" signs in as alice.
            sign_in_case_sensitive=False,
            standard_attributes=cognito.StandardAttributes(
                email=cognito.StandardAttribute(required=True, mutable=True)
            ),
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            password_policy=cognito.PasswordPolicy(
                min_length=12,
                require_digits=True,
                require_lowercase=True,
                require_uppercase=True,
                require_symbols=True,
                temp_password_validity=Duration.days(3),
            ),
            mfa=cognito.Mfa.REQUIRED if mfa_required else cognito.Mfa.OPTIONAL,
            # One-time codes from an app: SMS would need an SNS role and costs.
            mfa_second_factor=cognito.MfaSecondFactor(sms=False, otp=True),
            deletion_protection=deletion_protection,
            removal_policy=removal_policy,
        )
        self.client = self.user_pool.add_client(
            "Client",
            # The owner's app runs on their device and cannot keep a secret.
            generate_secret=False,
            auth_flows=cognito.AuthFlow(user_srp=True),
            disable_o_auth=True,
            prevent_user_existence_errors=True,
            enable_token_revocation=True,
        )
        self.identity_pool = cognito.CfnIdentityPool(
            self,
            "IdentityPool",
            allow_unauthenticated_identities=False,
            allow_classic_flow=False,
            cognito_identity_providers=[
                cognito.CfnIdentityPool.CognitoIdentityProviderProperty(
                    client_id=self.client.user_pool_client_id,
                    provider_name=self.user_pool.user_pool_provider_name,
                    server_side_token_check=True,
                )
            ],
        )
        self.upload_role = iam.Role(
            self,
            "UploadRole",
            description="A signed-in owner uploading media",
            assumed_by=iam.FederatedPrincipal(
                IDENTITY_SERVICE,
                conditions={
                    "StringEquals": {f"{IDENTITY_SERVICE}:aud": self.identity_pool.ref},
                    "ForAnyValue:StringLike": {
                        f"{IDENTITY_SERVICE}:amr": "authenticated"
                    },
                },
                assume_role_action="sts:AssumeRoleWithWebIdentity",
            ).with_session_tags(),
            max_session_duration=Duration.hours(1),
        )
        cognito.CfnIdentityPoolPrincipalTag(
            self,
            "UsernameTag",
            identity_pool_id=self.identity_pool.ref,
            identity_provider_name=self.user_pool.user_pool_provider_name,
            principal_tags={USERNAME_TAG: "cognito:username"},
            use_defaults=False,
        )
        cognito.CfnIdentityPoolRoleAttachment(
            self,
            "Roles",
            identity_pool_id=self.identity_pool.ref,
            roles={"authenticated": self.upload_role.role_arn},
        )
