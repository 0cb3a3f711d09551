"""What the synthesized templates deploy, read from the templates themselves."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

import pytest
from aws_cdk import assertions

from mumble.backends.aws import AwsSettings, workflows
from mumble.backends.aws.adapter import ORIGIN_SECRET
from mumble.backends.aws.api import ApiSettings
from mumble_cdk import package
from mumble_cdk.workflows import placeholders, substitution_key, task_states

from .conftest import CERTIFICATE_ARN, DEV_DOMAIN, Synthesis
from .template import (
    as_list,
    get_att,
    only,
    policy_statements,
    properties,
    render,
    resources,
)

Template = dict[str, Any]
READ_VERBS = ("Get", "List", "Describe", "Query", "Scan", "BatchGet")


def functions_by_handler(template: Template) -> dict[str, str]:
    return {
        props["Properties"]["Handler"]: name
        for name, props in resources(template, "AWS::Lambda::Function").items()
    }


def machines_by_workflow(template: Template) -> dict[str, str]:
    """Workflow name -> logical id, by the state machine's name."""
    return {
        resource["Properties"]["StateMachineName"].rsplit("-", 1)[1]: name
        for name, resource in resources(
            template, "AWS::StepFunctions::StateMachine"
        ).items()
    }


# tables


@pytest.mark.parametrize("stage", ["prod", "dev"])
def test_tables_stream_both_images_on_demand(synthesis: Synthesis, stage: str) -> None:
    template = synthesis.templates[stage]
    tables = resources(template, "AWS::DynamoDB::Table")
    assert len(tables) == 2
    for table in tables.values():
        props = table["Properties"]
        assert props["KeySchema"] == [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ]
        assert props["AttributeDefinitions"] == [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
        assert props["TimeToLiveSpecification"] == {
            "AttributeName": package.EXPIRY_ATTRIBUTE,
            "Enabled": True,
        }
        assert props["SSESpecification"]["SSEEnabled"] is True
        recovery = props["PointInTimeRecoverySpecification"]
        assert recovery["PointInTimeRecoveryEnabled"] is (stage == "prod")
        assert props.get("DeletionProtectionEnabled", False) is (stage == "prod")
        assert table["DeletionPolicy"] == ("Retain" if stage == "prod" else "Delete")


# workflows


def test_state_machines_are_the_package_definitions(prod: Template) -> None:
    expected = workflows.state_machines(placeholders(workflows.STEP_NAMES))
    handlers = functions_by_handler(prod)
    machines = machines_by_workflow(prod)
    assert set(machines) == set(workflows.WORKFLOW_NAMES)
    for workflow, name in machines.items():
        props = properties(prod, name)
        assert json.loads(props["DefinitionString"]) == expected[workflow]
        # Each placeholder becomes the ARN of the function running that step.
        for key, value in props["DefinitionSubstitutions"].items():
            step = next(s for s in workflows.STEP_NAMES if substitution_key(s) == key)
            assert get_att(value) == (handlers[package.STEP_HANDLERS[step]], "Arn")
        assert props["StateMachineType"] == "STANDARD"


def test_deployed_definitions_keep_map_concurrency_and_retries(prod: Template) -> None:
    machines = machines_by_workflow(prod)
    deliver = json.loads(properties(prod, machines["deliver"])["DefinitionString"])
    maps = [s for s in deliver["States"].values() if s["Type"] == "Map"]
    assert [m["MaxConcurrency"] for m in maps] == [workflows.DEFAULT_MAX_CONCURRENCY]
    attempt = maps[0]["ItemProcessor"]["States"]["Attempt"]
    assert attempt["Retry"] == [
        workflows.DELIVERY_RETRY.retrier((workflows.TRANSIENT_ERROR,))
    ]
    for name in machines.values():
        definition = json.loads(properties(prod, name)["DefinitionString"])
        tasks = list(task_states(definition))
        assert tasks
        for task in tasks:
            assert (
                workflows.LAMBDA_RETRY.retrier(workflows.LAMBDA_ERRORS) in task["Retry"]
            )


def test_each_state_machine_invokes_only_its_own_steps(prod: Template) -> None:
    handlers = functions_by_handler(prod)
    for name in machines_by_workflow(prod).values():
        props = properties(prod, name)
        role = get_att(props["RoleArn"])
        assert role is not None
        granted = {
            get_att(resource)
            for owner, statement in policy_statements(prod)
            if prod["Resources"][owner]["Properties"].get("Roles") == [{"Ref": role[0]}]
            for resource in as_list(statement["Resource"])
        }
        invoked = {get_att(v) for v in props["DefinitionSubstitutions"].values()}
        assert granted == invoked
        assert invoked < {(function, "Arn") for function in handlers.values()}


def test_rules_start_each_workflow_on_its_prefix(prod: Template) -> None:
    bucket, _ = only_bucket_with_notifications(prod)
    patterns = workflows.event_patterns("BUCKET")
    machines = machines_by_workflow(prod)
    rules = resources(prod, "AWS::Events::Rule")
    started = {}
    for rule in rules.values():
        props = rule["Properties"]
        target = props["Targets"][0]
        if props["EventPattern"]["source"] == ["aws.s3"]:
            workflow = next(
                w for w, n in machines.items() if target["Arn"] == {"Ref": n}
            )
            pattern = json.loads(
                json.dumps(props["EventPattern"]).replace(
                    json.dumps({"Ref": bucket}), '"BUCKET"'
                )
            )
            assert pattern == patterns[workflow]
            assert target["DeadLetterConfig"]["Arn"] == workflow_failures(prod)
            assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
            started[workflow] = True
    assert set(started) == set(workflows.WORKFLOW_NAMES)


def test_failed_executions_and_undelivered_events_reach_an_alarmed_queue(
    synthesis: Synthesis,
) -> None:
    for stage, threshold in (("prod", 1), ("dev", 10)):
        template = synthesis.templates[stage]
        queue = workflow_failures(template)
        failed = [
            rule["Properties"]
            for rule in resources(template, "AWS::Events::Rule").values()
            if rule["Properties"]["EventPattern"]["source"] == ["aws.states"]
        ]
        assert len(failed) == 1
        assert failed[0]["EventPattern"]["detail"]["status"] == [
            "FAILED",
            "TIMED_OUT",
            "ABORTED",
        ]
        assert sorted(
            ref["Ref"] for ref in failed[0]["EventPattern"]["detail"]["stateMachineArn"]
        ) == sorted(machines_by_workflow(template).values())
        assert failed[0]["Targets"][0]["Arn"] == queue
        alarms = alarms_on(template, queue["Fn::GetAtt"][0])
        assert len(alarms) == 1
        assert alarms[0]["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert alarms[0]["Threshold"] == threshold


def statistics_failures(template: Template) -> str:
    (name,) = [n for n in resources(template, "AWS::SQS::Queue") if "Statistics" in n]
    return name


def alarms_on(template: Template, queue: str) -> list[dict[str, Any]]:
    """The alarms watching the queue with logical id ``queue``."""
    return [
        alarm["Properties"]
        for alarm in resources(template, "AWS::CloudWatch::Alarm").values()
        if alarm["Properties"]["Dimensions"][0]["Value"]
        == {"Fn::GetAtt": [queue, "QueueName"]}
    ]


@pytest.mark.parametrize(("stage", "threshold"), [("prod", 1), ("dev", 10)])
def test_records_the_statistics_could_not_count_raise_an_alarm(
    synthesis: Synthesis, stage: str, threshold: int
) -> None:
    template = synthesis.templates[stage]
    [alarm] = alarms_on(template, statistics_failures(template))
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Namespace"] == "AWS/SQS"
    assert alarm["Threshold"] == threshold
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def workflow_failures(template: Template) -> dict[str, Any]:
    (name,) = [n for n in resources(template, "AWS::SQS::Queue") if "Workflows" in n]
    return {"Fn::GetAtt": [name, "Arn"]}


def only_bucket_with_notifications(template: Template) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (name, bucket)
        for name, bucket in resources(template, "AWS::S3::Bucket").items()
        if "NotificationConfiguration" in bucket["Properties"]
    ]
    return found


# statistics


def test_statistics_read_both_streams_with_bisection_and_a_failure_queue(
    prod: Template,
) -> None:
    handler = functions_by_handler(prod)[package.STATISTICS_HANDLER]
    (queue,) = [q for q in resources(prod, "AWS::SQS::Queue") if "Statistics" in q]
    mappings = [
        m["Properties"]
        for m in resources(prod, "AWS::Lambda::EventSourceMapping").values()
    ]
    tables = set(resources(prod, "AWS::DynamoDB::Table"))
    assert {get_att(m["EventSourceArn"]) for m in mappings} == {
        (table, "StreamArn") for table in tables
    }
    for mapping in mappings:
        assert mapping["FunctionName"] == {"Ref": handler}
        assert mapping["BisectBatchOnFunctionError"] is True
        assert 0 < mapping["MaximumRetryAttempts"] <= 10
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        failures = mapping["DestinationConfig"]["OnFailure"]["Destination"]
        assert failures == {"Fn::GetAtt": [queue, "Arn"]}
        assert [
            json.loads(f["Pattern"]) for f in mapping["FilterCriteria"]["Filters"]
        ] == [workflows.stream_filter()]


# the API


@pytest.mark.parametrize(("stage", "rate"), [("prod", 100), ("dev", 20)])
def test_api_proxies_everything_to_the_adapter_with_throttling(
    synthesis: Synthesis, stage: str, rate: int
) -> None:
    template = synthesis.templates[stage]
    api = assertions.Template.from_json(template)
    api.has_resource_properties(
        "AWS::ApiGateway::RestApi",
        {
            "BinaryMediaTypes": ["*/*"],
            "EndpointConfiguration": {"Types": ["REGIONAL"]},
        },
    )
    api.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": stage,
            "MethodSettings": [
                assertions.Match.object_like(
                    {
                        "HttpMethod": "*",
                        "ResourcePath": "/*",
                        "ThrottlingRateLimit": rate,
                        "ThrottlingBurstLimit": rate * 2,
                    }
                )
            ],
        },
    )
    handler = functions_by_handler(template)[package.API_HANDLER]
    methods = resources(template, "AWS::ApiGateway::Method")
    assert len(methods) == 2  # ANY on / and on /{proxy+}
    for method in methods.values():
        props = method["Properties"]
        assert props["HttpMethod"] == "ANY"
        assert props["Integration"]["Type"] == "AWS_PROXY"
        assert handler in json.dumps(props["Integration"]["Uri"])


# the distribution


def test_cloudfront_function_forwards_host_and_date_on_viewer_request(
    prod: Template,
) -> None:
    function_name, function = only(prod, "AWS::CloudFront::Function")
    _, distribution = only(prod, "AWS::CloudFront::Distribution")
    config = distribution["Properties"]["DistributionConfig"]
    default = config["DefaultCacheBehavior"]
    assert default["FunctionAssociations"] == [
        {
            "EventType": "viewer-request",
            "FunctionARN": {"Fn::GetAtt": [function_name, "FunctionARN"]},
        }
    ]
    assert function["Properties"]["FunctionConfig"]["Runtime"] == "cloudfront-js-2.0"
    api_origin = next(
        o for o in config["Origins"] if o["Id"] == default["TargetOriginId"]
    )
    (header,) = api_origin["OriginCustomHeaders"]
    # The name the API's adapter reads (header names know no case).
    assert header["HeaderName"].lower() == ORIGIN_SECRET
    assert header["HeaderName"].lower() == "x-mumble-origin-secret"
    assert render(header["HeaderValue"]).startswith("{{resolve:secretsmanager:")


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")
def test_cloudfront_function_code_copies_the_viewer_headers(prod: Template) -> None:
    _, function = only(prod, "AWS::CloudFront::Function")
    code = function["Properties"]["FunctionCode"]
    script = code + (
        "const cases = [\n"
        "  {host: {value: 'social.example'}, date: {value: 'Tue, 07 Jun 2022 20:51:35 GMT'},\n"
        "   'x-mumble-original-host': {value: 'forged'}},\n"
        "  {host: {value: 'social.example'}, 'x-mumble-original-date': {value: 'forged'}},\n"
        "];\n"
        "console.log(JSON.stringify(cases.map(h => handler({request: {headers: h}}).headers)));\n"
    )
    result = subprocess.run(
        ["node", "-e", script], capture_output=True, text=True, check=True
    )
    with_date, without_date = json.loads(result.stdout)
    assert with_date["x-mumble-original-host"] == {"value": "social.example"}
    assert with_date["x-mumble-original-date"] == {
        "value": "Tue, 07 Jun 2022 20:51:35 GMT"
    }
    assert without_date["x-mumble-original-host"] == {"value": "social.example"}
    assert "x-mumble-original-date" not in without_date


def test_media_is_served_from_the_bucket_through_origin_access_control(
    prod: Template,
) -> None:
    _, distribution = only(prod, "AWS::CloudFront::Distribution")
    config = distribution["Properties"]["DistributionConfig"]
    (media,) = config["CacheBehaviors"]
    assert media["PathPattern"] == f"/{package.MEDIA_PREFIX}*"
    assert media["AllowedMethods"] == ["GET", "HEAD"]
    origin = next(o for o in config["Origins"] if o["Id"] == media["TargetOriginId"])
    oac, _ = only(prod, "AWS::CloudFront::OriginAccessControl")
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": [oac, "Id"]}
    bucket, _ = only_bucket_with_notifications(prod)
    reads = [
        statement
        for _, statement in policy_statements(prod)
        if statement.get("Principal") == {"Service": "cloudfront.amazonaws.com"}
    ]
    assert len(reads) == 1
    assert reads[0]["Action"] == "s3:GetObject"
    assert render(reads[0]["Resource"]) == f"{{{bucket}.Arn}}/{package.MEDIA_PREFIX}*"
    assert "AWS:SourceArn" in reads[0]["Condition"]["StringEquals"]


def test_custom_domain_uses_the_us_east_1_certificate_and_tls_1_2(
    dev: Template,
) -> None:
    _, distribution = only(dev, "AWS::CloudFront::Distribution")
    config = distribution["Properties"]["DistributionConfig"]
    assert config["Aliases"] == [DEV_DOMAIN]
    assert config["ViewerCertificate"] == {
        "AcmCertificateArn": CERTIFICATE_ARN,
        "MinimumProtocolVersion": "TLSv1.2_2021",
        "SslSupportMethod": "sni-only",
    }
    _, parameter = only(dev, "AWS::SSM::Parameter")
    assert parameter["Properties"]["Value"] == DEV_DOMAIN


def test_distribution_logs_to_the_access_log_bucket(prod: Template) -> None:
    _, distribution = only(prod, "AWS::CloudFront::Distribution")
    logging = distribution["Properties"]["DistributionConfig"]["Logging"]
    _, store = only_bucket_with_notifications(prod)
    log_bucket = store["Properties"]["LoggingConfiguration"]["DestinationBucketName"]
    assert logging["Bucket"] == {
        "Fn::GetAtt": [log_bucket["Ref"], "RegionalDomainName"]
    }


# the user pool


@pytest.mark.parametrize(("stage", "mfa"), [("prod", "ON"), ("dev", "OPTIONAL")])
def test_user_pool_is_closed_to_sign_ups(
    synthesis: Synthesis, stage: str, mfa: str
) -> None:
    template = synthesis.templates[stage]
    _, pool = only(template, "AWS::Cognito::UserPool")
    props = pool["Properties"]
    assert props["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    assert props["MfaConfiguration"] == mfa
    assert props["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]
    _, client = only(template, "AWS::Cognito::UserPoolClient")
    assert client["Properties"]["GenerateSecret"] is False
    assert client["Properties"]["ExplicitAuthFlows"] == [
        "ALLOW_USER_SRP_AUTH",
        "ALLOW_REFRESH_TOKEN_AUTH",
    ]
    _, identity_pool = only(template, "AWS::Cognito::IdentityPool")
    assert identity_pool["Properties"]["AllowUnauthenticatedIdentities"] is False


def test_upload_role_writes_only_into_the_callers_own_prefix(prod: Template) -> None:
    identity_pool, _ = only(prod, "AWS::Cognito::IdentityPool")
    _, attachment = only(prod, "AWS::Cognito::IdentityPoolRoleAttachment")
    assert set(attachment["Properties"]["Roles"]) == {"authenticated"}
    role = get_att(attachment["Properties"]["Roles"]["authenticated"])
    assert role is not None
    trust = properties(prod, role[0])["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [
        {
            "Action": ["sts:AssumeRoleWithWebIdentity", "sts:TagSession"],
            "Condition": {
                "StringEquals": {
                    "cognito-identity.amazonaws.com:aud": {"Ref": identity_pool}
                },
                "ForAnyValue:StringLike": {
                    "cognito-identity.amazonaws.com:amr": "authenticated"
                },
            },
            "Effect": "Allow",
            "Principal": {"Federated": "cognito-identity.amazonaws.com"},
        }
    ]
    bucket, _ = only_bucket_with_notifications(prod)
    granted = [
        statement
        for owner, statement in policy_statements(prod)
        if properties(prod, owner).get("Roles") == [{"Ref": role[0]}]
    ]
    assert granted == [
        {
            "Action": "s3:PutObject",
            "Effect": "Allow",
            "Resource": {
                "Fn::Join": [
                    "",
                    [
                        {"Fn::GetAtt": [bucket, "Arn"]},
                        "/media/${aws:PrincipalTag/username}/*",
                    ],
                ]
            },
        }
    ]
    # The tag is the username the ID token carries, as the API's presigned
    # uploads use it.
    _, tag = only(prod, "AWS::Cognito::IdentityPoolPrincipalTag")
    assert tag["Properties"]["IdentityPoolId"] == {"Ref": identity_pool}
    assert tag["Properties"]["PrincipalTags"] == {"username": "cognito:username"}
    assert tag["Properties"]["UseDefaults"] is False


# permissions


def is_write(action: str) -> bool:
    verb = action.split(":", 1)[1]
    return not verb.startswith(READ_VERBS)


def wildcard_writes(template: Template) -> list[str]:
    """Statements granting a write through a wildcard: a wildcard action,
    ``Resource: *``, or every object of a bucket."""
    buckets = set(resources(template, "AWS::S3::Bucket"))
    found = []
    for owner, statement in policy_statements(template):
        if statement["Effect"] != "Allow":
            continue
        actions = as_list(statement["Action"])
        if any("*" in action for action in actions):
            found.append(f"{owner}: {actions}")
        if not any(is_write(action) for action in actions):
            continue
        for resource in as_list(statement["Resource"]):
            text = render(resource)
            whole_bucket = any(text == f"{{{b}.Arn}}/*" for b in buckets)
            if text == "*" or whole_bucket:
                found.append(f"{owner}: {actions} on {text}")
    return found


@pytest.mark.parametrize("stage", ["prod", "dev"])
def test_no_policy_grants_a_wildcard_write(synthesis: Synthesis, stage: str) -> None:
    template = synthesis.templates[stage]
    assert len(list(policy_statements(template))) > 30
    assert wildcard_writes(template) == []
    for role in resources(template, "AWS::IAM::Role").values():
        # Managed policies are not in the template, so none are allowed.
        assert "ManagedPolicyArns" not in role["Properties"]


def test_the_wildcard_check_finds_wildcard_writes() -> None:
    bucket = {"Type": "AWS::S3::Bucket", "Properties": {}}
    template = {
        "Resources": {
            "B": bucket,
            "P": {
                "Type": "AWS::IAM::Policy",
                "Properties": {
                    "PolicyDocument": {
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": "s3:PutObject",
                                "Resource": "*",
                            },
                            {"Effect": "Allow", "Action": "s3:Put*", "Resource": "x"},
                            {
                                "Effect": "Allow",
                                "Action": ["s3:DeleteObject"],
                                "Resource": {
                                    "Fn::Join": [
                                        "",
                                        [{"Fn::GetAtt": ["B", "Arn"]}, "/*"],
                                    ]
                                },
                            },
                            {
                                "Effect": "Allow",
                                "Action": "s3:GetObject",
                                "Resource": "*",
                            },
                        ]
                    }
                },
            },
        }
    }
    assert len(wildcard_writes(template)) == 3


STREAM_READS = frozenset(
    {
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:ListStreams",
    }
)


@pytest.mark.parametrize("stage", ["prod", "dev"])
def test_each_function_is_granted_what_the_package_declares_and_no_more(
    synthesis: Synthesis, stage: str
) -> None:
    stack, template = synthesis.stacks[stage], synthesis.templates[stage]

    def logical_id(construct: Any) -> str:
        return str(stack.get_logical_id(construct.node.default_child))

    tables = {
        package.USER_TABLE: f"{{{logical_id(stack.user_table.table)}.Arn}}",
        package.OBJECT_TABLE: f"{{{logical_id(stack.object_table.table)}.Arn}}",
    }
    bucket = f"{{{logical_id(stack.object_store.bucket)}.Arn}}"
    functions = stack.functions_by_name()
    assert set(functions) == set(package.ACCESS)
    for name, function in functions.items():
        role = logical_id(function.role)
        granted = {
            (action, render(resource))
            for owner, statement in policy_statements(template)
            if properties(template, owner).get("Roles") == [{"Ref": role}]
            and statement["Effect"] == "Allow"
            for action in as_list(statement["Action"])
            if action.split(":")[0] in ("dynamodb", "s3") and action not in STREAM_READS
            for resource in as_list(statement["Resource"])
        }
        access = package.ACCESS[name]
        expected = {
            (action, tables[table])
            for table, actions in access.tables.items()
            for action in actions
        } | {
            (action, f"{bucket}/{prefix}*")
            for prefix, actions in access.objects.items()
            for action in actions
        }
        if access.reads_objects:
            expected.add(("s3:ListBucket", bucket))
        assert granted == expected, name
        reads_parameters = any(
            "ssm:GetParameter" in as_list(statement["Action"])
            for owner, statement in policy_statements(template)
            if properties(template, owner).get("Roles") == [{"Ref": role}]
        )
        assert reads_parameters == access.parameters, name


def test_backend_functions_reach_only_the_backends_prefixes(prod: Template) -> None:
    bucket, _ = only_bucket_with_notifications(prod)
    object_resources = {
        render(resource)
        for _, statement in policy_statements(prod)
        if "s3:PutObject" in as_list(statement["Action"])
        and "Principal" not in statement
        for resource in as_list(statement["Resource"])
    }
    allowed = {f"{{{bucket}.Arn}}/{prefix}*" for prefix in package.BACKEND_PREFIXES}
    allowed.add(f"{{{bucket}.Arn}}/media/${{aws:PrincipalTag/username}}/*")
    assert object_resources == allowed


# the bucket


@pytest.mark.parametrize("stage", ["prod", "dev"])
def test_buckets_are_encrypted_private_and_tls_only(
    synthesis: Synthesis, stage: str
) -> None:
    template = synthesis.templates[stage]
    buckets = resources(template, "AWS::S3::Bucket")
    assert len(buckets) == 2
    denied = {
        render(as_list(s["Resource"])[0]).split(".Arn")[0].strip("{")
        for _, s in policy_statements(template)
        if s["Effect"] == "Deny"
        and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    }
    for name, bucket in buckets.items():
        props = bucket["Properties"]
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert name in denied
        assert bucket["DeletionPolicy"] == ("Retain" if stage == "prod" else "Delete")


def test_object_store_announces_objects_and_expires_quarantine(prod: Template) -> None:
    _, store = only_bucket_with_notifications(prod)
    props = store["Properties"]
    assert props["NotificationConfiguration"] == {
        "EventBridgeConfiguration": {"EventBridgeEnabled": True}
    }
    rules = {rule["Id"]: rule for rule in props["LifecycleConfiguration"]["Rules"]}
    assert rules["quarantine"]["Prefix"] == package.QUARANTINE_PREFIX
    assert rules["quarantine"]["ExpirationInDays"] == 30
    # The notification is the bucket's own property, not CDK's custom resource.
    assert not [
        r for r in prod["Resources"].values() if r["Type"].startswith("Custom::")
    ]


# functions


@pytest.mark.parametrize(("stage", "days"), [("prod", 90), ("dev", 7)])
def test_every_function_logs_to_a_group_with_retention(
    synthesis: Synthesis, stage: str, days: int
) -> None:
    template = synthesis.templates[stage]
    groups = resources(template, "AWS::Logs::LogGroup")
    functions = resources(template, "AWS::Lambda::Function")
    assert len(functions) == len(workflows.STEP_NAMES) + 2
    for function in functions.values():
        group = function["Properties"]["LoggingConfig"]["LogGroup"]
        assert groups[group["Ref"]]["Properties"]["RetentionInDays"] == days
        assert function["Properties"]["Runtime"] == "python3.12"
        assert function["Properties"]["Architectures"] == ["arm64"]


def test_functions_run_the_packages_handlers(prod: Template) -> None:
    handlers = set(functions_by_handler(prod))
    assert handlers == {
        package.API_HANDLER,
        package.STATISTICS_HANDLER,
        *package.STEP_HANDLERS.values(),
    }
    assert {
        step: f"mumble.backends.aws.handlers.{step}" for step in workflows.STEP_NAMES
    } == package.STEP_HANDLERS


def test_step_functions_may_run_as_long_as_their_tasks_allow(prod: Template) -> None:
    by_handler = functions_by_handler(prod)
    for step, seconds in workflows.STEP_TIMEOUTS.items():
        function = properties(prod, by_handler[package.STEP_HANDLERS[step]])
        assert function["Timeout"] == seconds, step


def stand_in(value: Any) -> str:
    """A token as a string the settings can hold: ``{Logical}``, ``{Name.Attr}``."""
    return value if isinstance(value, str) else render(value)


def test_function_environment_is_what_the_backend_reads(prod: Template) -> None:
    handlers = functions_by_handler(prod)
    buckets = only_bucket_with_notifications(prod)[0]
    tables = sorted(resources(prod, "AWS::DynamoDB::Table"))
    for handler, name in handlers.items():
        variables = properties(prod, name)["Environment"]["Variables"]
        environ = {key: stand_in(value) for key, value in variables.items()}
        settings = AwsSettings.from_environ(environ | {"AWS_REGION": "eu-west-1"})
        assert settings.bucket == f"{{{buckets}}}"
        assert sorted([settings.object_table, settings.user_table]) == [
            f"{{{t}}}" for t in tables
        ]
        assert settings.user_table.startswith("{UserTable")
        assert settings.ssm_prefix == "/mumble/prod"
        assert settings.endpoint_url is None
        assert settings.allow_private_addresses is False  # tests and local runs
        # Every function mints ids on the domain parameter, the same for all.
        assert "MUMBLE_ORIGIN" not in variables
        assert set(settings.state_machines) == set(workflows.WORKFLOW_NAMES)
        if handler == package.API_HANDLER:
            api = ApiSettings.from_environ(environ, settings)
            pool, _ = only(prod, "AWS::Cognito::UserPool")
            client, _ = only(prod, "AWS::Cognito::UserPoolClient")
            assert api.user_pool_id == f"{{{pool}}}"
            assert api.client_id == f"{{{client}}}"
            assert api.origin is None  # read from the domain parameter
            assert api.origin_secret is not None
            assert api.origin_secret.startswith("{{resolve:secretsmanager:")


def test_state_machine_arns_in_the_environment_name_the_machines(
    prod: Template,
) -> None:
    name = next(iter(functions_by_handler(prod).values()))
    variables = properties(prod, name)["Environment"]["Variables"]
    for workflow in workflows.WORKFLOW_NAMES:
        arn = render(variables[f"MUMBLE_STATE_MACHINE_{workflow.upper()}"])
        assert arn.endswith(f":stateMachine:Mumble-prod-{workflow}")


# parameters and outputs


def test_domain_parameter_and_no_secret_in_the_template(prod: Template) -> None:
    distribution, _ = only(prod, "AWS::CloudFront::Distribution")
    _, parameter = only(prod, "AWS::SSM::Parameter")
    assert parameter["Properties"]["Name"] == "/mumble/prod/domain"
    assert parameter["Properties"]["Type"] == "String"
    assert parameter["Properties"]["Value"] == {
        "Fn::GetAtt": [distribution, "DomainName"]
    }
    text = json.dumps(prod)
    assert "PRIVATE KEY" not in text
    assert package.PRIVATE_KEYS + "/" in text  # granted, never created
    _, secret = only(prod, "AWS::SecretsManager::Secret")
    assert "SecretString" not in secret["Properties"]
    assert "GenerateSecretString" in secret["Properties"]


def test_outputs_name_everything_the_next_steps_need(prod: Template) -> None:
    outputs = set(prod["Outputs"])
    assert {
        "PublicUrl",
        "DistributionDomainName",
        "ApiUrl",
        "BucketName",
        "UserTableName",
        "ObjectTableName",
        "UserPoolId",
        "UserPoolClientId",
        "IdentityPoolId",
        "ParameterPrefix",
        "DomainParameterName",
        "InboundStateMachineArn",
        "OutboundStateMachineArn",
        "DeliverStateMachineArn",
        "WorkflowFailureQueueUrl",
        "StatisticsFailureQueueUrl",
    } <= outputs
    assert prod["Outputs"]["ParameterPrefix"]["Value"] == "/mumble/prod"
    queues = {
        name: {"Ref": logical}
        for name, logical in (
            ("WorkflowFailureQueueUrl", workflow_failures(prod)["Fn::GetAtt"][0]),
            ("StatisticsFailureQueueUrl", statistics_failures(prod)),
        )
    }
    for name, url in queues.items():
        assert prod["Outputs"][name]["Value"] == url


def test_stage_decides_protection(synthesis: Synthesis) -> None:
    prod_stack, dev_stack = synthesis.stacks["prod"], synthesis.stacks["dev"]
    assert prod_stack.termination_protection is True
    assert dev_stack.termination_protection is False
    for stage, policy in (("prod", "Retain"), ("dev", "Delete")):
        template = synthesis.templates[stage]
        _, pool = only(template, "AWS::Cognito::UserPool")
        assert pool["DeletionPolicy"] == policy
        assert (pool["Properties"].get("DeletionProtection") == "ACTIVE") is (
            stage == "prod"
        )


def test_template_names_no_machine_path(synthesis: Synthesis) -> None:
    text = json.dumps(synthesis.templates)
    assert not re.search(r"/(tmp|home|work|root)/", text)
