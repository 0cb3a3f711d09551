"""The Mumble stack: the units, the grants between them, and the outputs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from aws_cdk import ArnFormat, CfnOutput, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from . import bundling, nag, package
from .access_logs import AccessLogs
from .api import Api
from .config import PROJECT, DeployConfig
from .distribution import Distribution
from .functions import FunctionSettings, MumbleFunction
from .object_store import ObjectStore
from .statistics import Statistics
from .tables import RecordTable
from .user_pool import USERNAME, UserPool
from .workflows import DispatcherWorkflows, pascal


class MumbleStack(Stack):
    """Everything one Mumble deployment runs on.

    Each unit builds its own resources; who may do what to whom is decided
    here, statement by statement, with named actions only.
    """

    def __init__(
        self, scope: Construct, id: str, *, config: DeployConfig, **kwargs: Any
    ) -> None:
        super().__init__(scope, id, **kwargs)
        self.config = config
        stage = config.stage
        self.parameter_prefix = f"/{PROJECT}/{stage.name}"

        self.access_logs = AccessLogs(
            self,
            "AccessLogs",
            removal_policy=stage.removal_policy,
            expiry=stage.access_log_expiry,
        )
        self.object_store = ObjectStore(
            self,
            "ObjectStore",
            removal_policy=stage.removal_policy,
            quarantine_prefix=package.QUARANTINE_PREFIX,
            quarantine_expiry=stage.quarantine_expiry,
            access_logs=self.access_logs.bucket,
        )
        self.user_table, self.object_table = (
            RecordTable(
                self,
                name,
                removal_policy=stage.removal_policy,
                point_in_time_recovery=stage.point_in_time_recovery,
                deletion_protection=stage.deletion_protection,
                time_to_live_attribute=package.EXPIRY_ATTRIBUTE,
            )
            for name in ("UserTable", "ObjectTable")
        )
        self.user_pool = UserPool(
            self,
            "UserPool",
            mfa_required=stage.mfa_required,
            removal_policy=stage.removal_policy,
            deletion_protection=stage.deletion_protection,
        )
        # Generated at deployment: the value is never in the template.
        self.origin_secret = secretsmanager.Secret(
            self,
            "OriginSecret",
            description="Proves to the API that a request came through CloudFront",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                exclude_punctuation=True, password_length=48
            ),
            removal_policy=stage.removal_policy,
        )
        # A dynamic reference, resolved by CloudFormation at deployment.
        origin_secret = self.origin_secret.secret_value.unsafe_unwrap()
        machine_names = {
            name: f"{self.stack_name}-{name}" for name in package.workflow_names()
        }
        functions = FunctionSettings(
            code=bundling.lambda_code(config.lambda_dependencies),
            log_retention=stage.log_retention,
            removal_policy=stage.removal_policy,
            environment=package.function_environment(
                bucket=self.object_store.bucket.bucket_name,
                user_table=self.user_table.table.table_name,
                object_table=self.object_table.table.table_name,
                ssm_prefix=self.parameter_prefix,
                # Built from the names, not taken from the machines: those
                # depend on the functions this environment belongs to.
                state_machines={
                    name: self._state_machine_arn(machine)
                    for name, machine in machine_names.items()
                },
            ),
        )
        self.api = Api(
            self,
            "Api",
            functions=functions,
            handler=package.API_HANDLER,
            environment=package.api_environment(
                user_pool_id=self.user_pool.user_pool.user_pool_id,
                client_id=self.user_pool.client.user_pool_client_id,
                origin_secret=origin_secret,
            ),
            stage_name=stage.name,
            rate_limit=stage.api_rate_limit,
            burst_limit=stage.api_burst_limit,
        )
        bucket_name = self.object_store.bucket.bucket_name
        self.workflows = DispatcherWorkflows(
            self,
            "Workflows",
            functions=functions,
            handlers=package.STEP_HANDLERS,
            state_machines=package.state_machines,
            machine_names=machine_names,
            event_patterns=package.event_patterns(bucket_name),
            failure_retention=stage.failure_retention,
            failure_alarm_threshold=stage.failure_alarm_threshold,
        )
        self.statistics = Statistics(
            self,
            "Statistics",
            functions=functions,
            handler=package.STATISTICS_HANDLER,
            tables=[self.user_table.table, self.object_table.table],
            failure_retention=stage.failure_retention,
            failure_alarm_threshold=stage.failure_alarm_threshold,
            stream_filter=package.stream_filter(),
        )
        self.distribution = Distribution(
            self,
            "Distribution",
            api=self.api.rest_api,
            media_bucket=self.object_store.bucket,
            media_prefix=package.MEDIA_PREFIX,
            origin_secret=origin_secret,
            access_logs=self.access_logs.bucket,
            domain=config.domain,
        )
        # Written here once; `mumble_cdk.admin set-domain` may change it later.
        self.domain_parameter = ssm.StringParameter(
            self,
            "DomainParameter",
            parameter_name=f"{self.parameter_prefix}/{package.DOMAIN_PARAMETER}",
            description="The host name Mumble's ids are built on",
            string_value=self.distribution.domain_name,
        )
        self._grant()
        self._outputs()

    def functions(self) -> list[MumbleFunction]:
        """Every Lambda function of the deployment."""
        return [
            self.api.handler,
            *self.workflows.step_functions.values(),
            self.statistics.handler,
        ]

    def _state_machine_arn(self, name: str) -> str:
        return self.format_arn(
            service="states",
            resource="stateMachine",
            resource_name=name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    def _parameter_arn(self, name: str) -> str:
        return self.format_arn(
            service="ssm",
            resource="parameter",
            resource_name=f"{self.parameter_prefix.strip('/')}/{name}",
        )

    # grants

    def functions_by_name(self) -> dict[str, MumbleFunction]:
        """Every function, by the name its access is declared under."""
        return {
            package.API_FUNCTION: self.api.handler,
            **self.workflows.step_functions,
            package.STATISTICS_FUNCTION: self.statistics.handler,
        }

    def _grant(self) -> None:
        """Each function gets what the package declares it does, and no more."""
        bucket = self.object_store.bucket
        tables = {
            package.USER_TABLE: self.user_table.table.table_arn,
            package.OBJECT_TABLE: self.object_table.table.table_arn,
        }
        for name, function in self.functions_by_name().items():
            access = package.ACCESS[name]
            for table, actions in access.tables.items():
                _allow(function, actions, [tables[table]])
            for prefix, actions in sorted(access.objects.items()):
                resource = bucket.arn_for_objects(f"{prefix}*")
                _allow(
                    function,
                    actions,
                    [resource],
                    wildcards=f"Objects are granted by key prefix: {prefix} is "
                    "one of the backend's own (see mumble.backends.aws.bucket).",
                )
            if access.reads_objects:
                # Without it a missing object reads as 403 instead of 404.
                _allow(function, ["s3:ListBucket"], [bucket.bucket_arn])
            if access.parameters:
                _allow(
                    function,
                    ["ssm:GetParameter"],
                    [
                        self._parameter_arn(package.DOMAIN_PARAMETER),
                        self._parameter_arn(f"{package.PRIVATE_KEYS}/*"),
                    ],
                    wildcards="One SecureString per local user, named by the "
                    "user; read to sign requests.",
                )
        for name, machine in self.workflows.state_machines.items():
            machine.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["lambda:InvokeFunction"],
                    resources=[
                        self.workflows.step_functions[step].function.function_arn
                        for step in sorted(self.workflows.invokes[name])
                    ],
                )
            )
        # A signed-in owner writes into their own folder and nowhere else.
        own_media = bucket.arn_for_objects(f"{package.MEDIA_PREFIX}{USERNAME}/*")
        self.user_pool.upload_role.add_to_policy(
            iam.PolicyStatement(actions=["s3:PutObject"], resources=[own_media])
        )
        nag.acknowledge_wildcards(
            self.user_pool.upload_role,
            [own_media],
            "The prefix is the caller's own username, a session tag the "
            "identity pool sets from the ID token: each owner writes new "
            "files into their own folder only.",
        )
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudfront.amazonaws.com")],
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(f"{package.MEDIA_PREFIX}*")],
                conditions={
                    "StringEquals": {
                        "AWS:SourceArn": self.format_arn(
                            service="cloudfront",
                            region="",
                            resource="distribution",
                            resource_name=(
                                self.distribution.distribution.distribution_id
                            ),
                        )
                    }
                },
            )
        )

    # outputs

    def _outputs(self) -> None:
        pool = self.user_pool
        distribution = self.distribution
        values = {
            "PublicUrl": f"https://{distribution.domain_name}",
            "DistributionDomainName": (
                distribution.distribution.distribution_domain_name
            ),
            "ApiUrl": self.api.rest_api.url,
            "BucketName": self.object_store.bucket.bucket_name,
            "UserTableName": self.user_table.table.table_name,
            "ObjectTableName": self.object_table.table.table_name,
            "UserPoolId": pool.user_pool.user_pool_id,
            "UserPoolClientId": pool.client.user_pool_client_id,
            "IdentityPoolId": pool.identity_pool.ref,
            "ParameterPrefix": self.parameter_prefix,
            "DomainParameterName": self.domain_parameter.parameter_name,
            "WorkflowFailureQueueUrl": self.workflows.failures.queue.queue_url,
            "StatisticsFailureQueueUrl": self.statistics.failures.queue.queue_url,
        }
        for name, machine in self.workflows.state_machines.items():
            values[f"{pascal(name)}StateMachineArn"] = machine.state_machine_arn
        for key, value in values.items():
            CfnOutput(self, key, value=value)


def _allow(
    function: MumbleFunction,
    actions: Iterable[str],
    resources: Sequence[str],
    *,
    wildcards: str | None = None,
) -> None:
    """Grant named actions; ``wildcards`` says why prefix wildcards are right."""
    function.role.add_to_policy(
        iam.PolicyStatement(actions=list(actions), resources=list(resources))
    )
    if wildcards:
        nag.acknowledge_wildcards(function.role, resources, wildcards)
