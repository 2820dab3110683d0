"""Deploys the root stack as `aws cloudformation package` produces it (the real AWS CLI,
uploading the nested templates to moto's S3, as `cargo xtask deploy` runs it) in moto's
CloudFormation, wired exactly as the packaged root wires it, and checks what moto then
reports about the resources, including that the host task and the consumer function get
exactly the environment the binaries read.

moto cannot create the root stack itself: it resolves no `Fn::GetAtt Stack.Outputs.X`
between nested stacks, and has no ElastiCache or Secrets Manager resources. The test
therefore walks the packaged root: each nested stack is created from the S3 URL the
package step wrote, with the parameters the root passes it (root parameters, or outputs
of stacks created before it). The cache and monitoring stacks are left out (no ElastiCache
or CloudWatch alarms in moto's CloudFormation); their outputs are replaced by the stand-ins
below. Resources moto skips inside a stack it does create are
listed in MOTO_SKIPS with the reason, and the test fails if that list goes stale.
What moto cannot report is checked on the templates in test_template_settings.py.
"""

import ast
import io
import os
import subprocess
import zipfile

import pytest
from cfnlint.decode import cfn_yaml

import binaries
import templates
from conftest import REGION

ACCOUNT = "123456789012"

# Root parameters of the test deployment; the rest keep the root template's defaults.
ROOT_PARAMETERS = {
    "EnvironmentName": "adtrack-test",
    "HostImageUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/adtrack-host:test",
    "ConsumerCodeBucket": "adtrack-test-artifacts",
    "ConsumerCodeKey": "consumer/bootstrap-test.zip",
    # moto has no certificates: plain HTTP, as for a demo.
    "AllowPlainHttp": "true",
    "Architecture": "arm64",
    # PROVISIONED, so that moto can show the shard count got through.
    "StreamMode": "PROVISIONED",
    "ShardCount": "3",
    "StreamRetentionHours": "48",
    "BatchSize": "250",
    "MaximumRetryAttempts": "4",
    "MaximumRecordAgeInSeconds": "7200",
}

# Stacks moto cannot create, and the outputs the others receive from them instead.
STAND_INS = {
    "CacheStack": {
        "RedisUrl": "rediss://master.adtrack-test.cache.invalid:6379",
        "RedisAuthSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:adtrack-test-redis-AbCdEf",
        "ReplicationGroupId": "adtrack-test-redis",
    },
    # moto's CloudFormation has no AWS::CloudWatch::Alarm: test_alarms.py checks them.
    "MonitoringStack": {
        "AlarmTopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:adtrack-test-alarms",
        "DashboardName": "adtrack-test-pipeline",
    },
}

# Resources moto's CloudFormation leaves out of a stack it creates: logical id -> why.
MOTO_SKIPS = {
    "PluginBucketStack": {
        "PluginBucketPolicy": "moto has no AWS::S3::BucketPolicy",
    },
    "ConsumerStack": {
        "DeadLetterQueuePolicy": "moto has no AWS::SQS::QueuePolicy",
    },
    "ServiceStack": {
        "AdminTokenSecret": "moto has no AWS::SecretsManager::Secret",
        "ScalableTarget": "moto has no AWS::ApplicationAutoScaling::ScalableTarget",
        "CpuScalingPolicy": "moto has no AWS::ApplicationAutoScaling::ScalingPolicy",
        "RequestCountScalingPolicy": "moto has no AWS::ApplicationAutoScaling::ScalingPolicy",
    },
    "LoadBalancersStack": {
        "AccessLogBucketPolicy": "moto has no AWS::S3::BucketPolicy",
        "HttpsListener": "condition HasCertificate is false: the test sets no certificate",
        "WebAcl": "moto has no AWS::WAFv2::WebACL",
        "WebAclLogging": "moto has no AWS::WAFv2::LoggingConfiguration",
        "WebAclAssociation": "moto has no AWS::WAFv2::WebACLAssociation",
    },
}

# The packaged root template's bucket and prefix in moto's S3.
ARTIFACT_BUCKET = "adtrack-test-templates"


def package_root(moto) -> dict:
    """`aws cloudformation package` of the root template into moto's S3; the packaged root."""
    aws = os.environ.get("AWS_CLI")
    assert aws, "AWS_CLI is not set: run `cargo xtask infrastructure test`"
    moto.client("s3").create_bucket(
        Bucket=ARTIFACT_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    packaged = moto.log.parent / "adtrack.packaged.yaml"
    result = subprocess.run(
        [
            aws, "cloudformation", "package",
            "--template-file", str(templates.ROOT_TEMPLATE),
            "--s3-bucket", ARTIFACT_BUCKET, "--s3-prefix", "adtrack-test/templates",
            "--output-template-file", str(packaged),
        ],
        capture_output=True, text=True, check=False,
        env=os.environ | {
            # moto serves path-style S3 URLs only under the name localhost.
            "AWS_ENDPOINT_URL": moto.endpoint.replace("127.0.0.1", "localhost"),
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
        },
    )
    assert result.returncode == 0, result.stderr
    return cfn_yaml.load(str(packaged))


class Deployment:
    """The stacks created in moto: outputs per nested stack of the root."""

    def __init__(self, moto, packaged_root: dict):
        self.moto = moto
        self.root = packaged_root
        self.cloudformation = moto.client("cloudformation")
        self.outputs: dict[str, dict[str, str]] = {}
        self.stack_names: dict[str, str] = {}

    def create_all(self) -> None:
        root = self.root
        parameters = {
            name: str(spec["Default"])
            for name, spec in root["Parameters"].items()
            if "Default" in spec
        } | ROOT_PARAMETERS
        missing = set(root["Parameters"]) - set(parameters)
        assert not missing, f"the test gives no value for root parameters {missing}"
        self.outputs.update(STAND_INS)
        pending = {
            logical_id: resource
            for logical_id, resource in root["Resources"].items()
            if resource["Type"] == "AWS::CloudFormation::Stack" and logical_id not in STAND_INS
        }
        while pending:
            ready = [
                logical_id
                for logical_id, resource in pending.items()
                if needed_stacks(resource) <= set(self.outputs)
            ]
            assert ready, f"nested stacks wait on each other: {sorted(pending)}"
            for logical_id in ready:
                resource = pending.pop(logical_id)
                values = {
                    name: self.resolve(value, parameters)
                    for name, value in resource["Properties"]["Parameters"].items()
                }
                self.create(logical_id, resource["Properties"]["TemplateURL"], values)

    def resolve(self, value, parameters: dict[str, str]) -> str:
        """The value the root passes for one nested-stack parameter."""
        if isinstance(value, dict) and set(value) == {"Ref"}:
            return parameters[value["Ref"]]
        if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
            text = value["Fn::Sub"]
            for name, parameter in parameters.items():
                text = text.replace("${" + name + "}", parameter)
            assert "${" not in text, text
            return text
        if isinstance(value, dict) and set(value) == {"Fn::FindInMap"}:
            mapping, key, attribute = value["Fn::FindInMap"]
            return self.root["Mappings"][mapping][self.resolve(key, parameters)][attribute]
        if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
            stack, attribute = value["Fn::GetAtt"]
            output = attribute.removeprefix("Outputs.")
            return self.outputs[stack][output]
        raise AssertionError(f"the test cannot resolve the root's parameter value {value!r}")

    def create(self, logical_id: str, template_url: str, parameters: dict[str, str]) -> None:
        name = f"adtrack-test-{logical_id}"
        try:
            self.cloudformation.create_stack(
                StackName=name,
                TemplateURL=template_url,
                Parameters=[
                    {"ParameterKey": key, "ParameterValue": value}
                    for key, value in parameters.items()
                ],
                Capabilities=["CAPABILITY_NAMED_IAM"],
            )
        except Exception as error:
            raise AssertionError(
                f"moto could not create {logical_id}: {error}\n{self.moto.log_tail()}"
            ) from error
        stack = self.cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE", (logical_id, stack)
        self.stack_names[logical_id] = name
        self.outputs[logical_id] = {
            output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])
        }

    def created_resources(self, logical_id: str) -> dict[str, dict]:
        """The resources moto lists for one stack: logical id -> summary."""
        summaries = self.cloudformation.list_stack_resources(
            StackName=self.stack_names[logical_id]
        )["StackResourceSummaries"]
        return {summary["LogicalResourceId"]: summary for summary in summaries}


def needed_stacks(resource: dict) -> set[str]:
    """The nested stacks whose outputs a nested stack's parameters use."""
    return {
        value["Fn::GetAtt"][0]
        for value in resource["Properties"].get("Parameters", {}).values()
        if isinstance(value, dict) and "Fn::GetAtt" in value
    }


@pytest.fixture(scope="module")
def deployment(moto):
    """Every nested stack moto can create, created once for this module."""
    s3 = moto.client("s3")
    bucket = ROOT_PARAMETERS["ConsumerCodeBucket"]
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    # moto reads the function package from S3 but never runs it: a placeholder will do.
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("bootstrap", "#!/bin/sh\n")
    s3.put_object(Bucket=bucket, Key=ROOT_PARAMETERS["ConsumerCodeKey"], Body=package.getvalue())
    created = Deployment(moto, package_root(moto))
    created.create_all()
    return created


def test_the_packaged_root_differs_only_in_where_the_nested_templates_are(deployment, moto):
    local = templates.root()
    assert set(deployment.root["Resources"]) == set(local["Resources"])
    s3 = moto.client("s3")
    for logical_id, path in templates.nested_stacks().items():
        packaged = deployment.root["Resources"][logical_id]
        url = packaged["Properties"]["TemplateURL"]
        bucket, key = url.split("/", 3)[3].split("/", 1)
        uploaded = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        # The AWS CLI uploads the template as it parsed it (quotes and folding may change).
        assert cfn_yaml.loads(uploaded) == templates.load(path), logical_id
        packaged_properties = dict(packaged["Properties"], TemplateURL=None)
        local_properties = dict(local["Resources"][logical_id]["Properties"], TemplateURL=None)
        assert packaged_properties == local_properties, logical_id


def test_every_stack_but_the_cache_and_the_alarms_is_created(deployment):
    assert set(deployment.stack_names) == set(templates.nested_stacks()) - set(STAND_INS)


@pytest.mark.parametrize("logical_id", sorted(set(templates.nested_stacks()) - set(STAND_INS)))
def test_moto_creates_every_resource_but_the_known_gaps(deployment, logical_id):
    declared = set(templates.nested(logical_id)["Resources"])
    created = deployment.created_resources(logical_id)
    assert {summary["ResourceStatus"] for summary in created.values()} <= {"CREATE_COMPLETE"}
    assert declared - set(created) == set(MOTO_SKIPS.get(logical_id, {}))


def test_stream_is_active_with_the_configured_shards_and_retention(deployment, moto):
    outputs = deployment.outputs["StreamStack"]
    summary = moto.client("kinesis").describe_stream_summary(StreamName=outputs["StreamName"])[
        "StreamDescriptionSummary"
    ]
    assert summary["StreamARN"] == outputs["StreamArn"]
    assert summary["StreamStatus"] == "ACTIVE"
    assert summary["StreamModeDetails"]["StreamMode"] == "PROVISIONED"
    assert summary["OpenShardCount"] == int(ROOT_PARAMETERS["ShardCount"])
    assert summary["RetentionPeriodHours"] == int(ROOT_PARAMETERS["StreamRetentionHours"])


def test_table_is_keyed_by_message_id_and_billed_on_demand(deployment, moto):
    outputs = deployment.outputs["TableStack"]
    table = moto.client("dynamodb").describe_table(TableName=outputs["TableName"])["Table"]
    assert table["TableArn"] == outputs["TableArn"]
    assert table["TableStatus"] == "ACTIVE"
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_plugin_bucket_exists_and_encrypts_by_default(deployment, moto):
    bucket = deployment.outputs["PluginBucketStack"]["BucketName"]
    s3 = moto.client("s3")
    s3.head_bucket(Bucket=bucket)
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_dead_letter_queue_keeps_messages_fourteen_days_encrypted(deployment, moto):
    outputs = deployment.outputs["ConsumerStack"]
    attributes = moto.client("sqs").get_queue_attributes(
        QueueUrl=outputs["DeadLetterQueueUrl"], AttributeNames=["All"]
    )["Attributes"]
    assert attributes["QueueArn"] == outputs["DeadLetterQueueArn"]
    assert attributes["MessageRetentionPeriod"] == "1209600"
    assert attributes["SqsManagedSseEnabled"] == "true"


def test_event_source_mapping_reports_partial_failures_and_dead_letters(deployment, moto):
    consumer = deployment.outputs["ConsumerStack"]
    mappings = moto.client("lambda").list_event_source_mappings(
        FunctionName=consumer["FunctionName"]
    )["EventSourceMappings"]
    assert len(mappings) == 1
    mapping = mappings[0]
    assert mapping["EventSourceArn"] == deployment.outputs["StreamStack"]["StreamArn"]
    assert mapping["FunctionArn"] == consumer["FunctionArn"]
    assert mapping["State"] == "Enabled"
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert mapping["BatchSize"] == int(ROOT_PARAMETERS["BatchSize"])
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["MaximumRetryAttempts"] == int(ROOT_PARAMETERS["MaximumRetryAttempts"])
    assert mapping["MaximumRecordAgeInSeconds"] == int(ROOT_PARAMETERS["MaximumRecordAgeInSeconds"])
    assert mapping["DestinationConfig"] == {
        "OnFailure": {"Destination": consumer["DeadLetterQueueArn"]}
    }


def test_consumer_function_runs_bootstrap_in_the_private_subnets(deployment, moto):
    outputs = deployment.outputs
    function = moto.client("lambda").get_function(
        FunctionName=outputs["ConsumerStack"]["FunctionName"]
    )["Configuration"]
    assert function["Runtime"] == "provided.al2023"
    assert function["Handler"] == "bootstrap"
    # moto's CloudFormation drops Architectures: test_template_settings checks the mapping.
    assert set(function["VpcConfig"]["SubnetIds"]) == set(
        outputs["NetworkStack"]["PrivateSubnetIds"].split(",")
    )
    assert function["VpcConfig"]["SecurityGroupIds"] == [
        outputs["SecurityGroupsStack"]["ConsumerSecurityGroupId"]
    ]
    variables = function["Environment"]["Variables"]
    assert_environment_matches(binaries.consumer(), set(variables))
    assert variables["METRICS_NAMESPACE"] == f"adtrack/{ROOT_PARAMETERS['EnvironmentName']}"
    assert variables["DYNAMODB_TABLE"] == outputs["TableStack"]["TableName"]
    assert variables["DEAD_LETTER_QUEUE_URL"] == outputs["ConsumerStack"]["DeadLetterQueueUrl"]
    assert variables["PLUGIN_BUCKET"] == outputs["PluginBucketStack"]["BucketName"]
    assert variables["REDIS_URL"] == STAND_INS["CacheStack"]["RedisUrl"]
    assert variables["REDIS_AUTH_TOKEN_SECRET_ARN"] == STAND_INS["CacheStack"]["RedisAuthSecretArn"]
    assert variables["PLUGIN_CACHE_DIR"] == "/tmp/adtrack-plugins"


def assert_environment_matches(description: dict, deployed: set[str]) -> None:
    """The deployment sets only variables the binary reads, and every one it requires."""
    read = {variable["name"] for variable in description["environment"]}
    required = {variable["name"] for variable in description["environment"] if variable["required"]}
    assert deployed - read == set(), "set by the template but read by nobody"
    assert required - deployed == set(), "required by the binary but not set"
    # The AWS backends: without these the binary would run on its embedded defaults.
    assert {"REDIS_URL", "PLUGIN_BUCKET", "METRICS_NAMESPACE"} <= deployed


def test_consumer_role_names_the_resources_it_uses(deployment, moto):
    outputs = deployment.outputs
    statements = role_statements(deployment, moto, "ConsumerStack", "FunctionRole")
    bucket = outputs["PluginBucketStack"]["BucketName"]
    stream = outputs["StreamStack"]["StreamArn"]
    assert statements["ReadEventStream"]["Resource"] == stream
    assert statements["EnhancedFanOutReads"]["Resource"] == f"{stream}/consumer/*"
    assert statements["WriteEvents"]["Resource"] == outputs["TableStack"]["TableArn"]
    assert statements["ReadPlugins"]["Resource"] == f"arn:aws:s3:::{bucket}/*"
    assert statements["ListPlugins"]["Resource"] == f"arn:aws:s3:::{bucket}"
    assert statements["DeadLetter"]["Resource"] == outputs["ConsumerStack"]["DeadLetterQueueArn"]
    assert statements["DeadLetterData"]["Resource"] == f"arn:aws:s3:::{bucket}/dead-letters/*"
    assert set(statements["WriteEvents"]["Action"]) == {
        "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:GetItem",
    }
    assert statements["ReadRedisAuthToken"]["Resource"] == STAND_INS["CacheStack"]["RedisAuthSecretArn"]
    assert [sid for sid, statement in statements.items() if statement["Resource"] == "*"] == [
        "VpcNetworkInterfaces"
    ]


def test_redis_admits_only_the_host_and_the_consumer(deployment, moto):
    groups = deployment.outputs["SecurityGroupsStack"]
    redis = moto.client("ec2").describe_security_groups(
        GroupIds=[groups["RedisSecurityGroupId"]]
    )["SecurityGroups"][0]
    assert rules(redis["IpPermissions"]) == {
        (6379, 6379, groups["HostSecurityGroupId"]),
        (6379, 6379, groups["ConsumerSecurityGroupId"]),
    }
    assert all(not permission["IpRanges"] for permission in redis["IpPermissions"])


def test_host_tasks_admit_only_the_two_load_balancers(deployment, moto):
    # moto ignores inline egress rules: test_template_settings checks those.
    groups = deployment.outputs["SecurityGroupsStack"]
    (host,) = moto.client("ec2").describe_security_groups(
        GroupIds=[groups["HostSecurityGroupId"]]
    )["SecurityGroups"]
    assert rules(host["IpPermissions"]) == {
        (8080, 8080, groups["LoadBalancerSecurityGroupId"]),
        (8080, 8080, groups["InternalLoadBalancerSecurityGroupId"]),
    }
    assert not any(permission["IpRanges"] for permission in host["IpPermissions"])


def rules(permissions: list[dict]) -> set[tuple]:
    """Security group rules as (from port, to port, peer group), CIDR rules left out."""
    return {
        (permission.get("FromPort"), permission.get("ToPort"), pair["GroupId"])
        for permission in permissions
        for pair in permission["UserIdGroupPairs"]
    }


def test_load_balancers_check_health_on_the_host_port(deployment, moto):
    groups = moto.client("elbv2").describe_target_groups()["TargetGroups"]
    assert len(groups) == 2
    for group in groups:
        assert (group["Protocol"], group["Port"], group["TargetType"]) == ("HTTP", 8080, "ip")
        assert group["HealthCheckPath"] == "/health/check"
        assert group["VpcId"] == deployment.outputs["NetworkStack"]["VpcId"]


def test_the_public_listener_forwards_only_the_tracking_api(deployment, moto):
    elbv2 = moto.client("elbv2")
    outputs = deployment.outputs["LoadBalancersStack"]
    balancers = {lb["Scheme"]: lb for lb in elbv2.describe_load_balancers()["LoadBalancers"]}
    assert set(balancers) == {"internet-facing", "internal"}
    public = balancers["internet-facing"]
    assert outputs["EndpointUrl"] == f"http://{public['DNSName']}"
    (listener,) = elbv2.describe_listeners(LoadBalancerArn=public["LoadBalancerArn"])["Listeners"]
    assert listener["Port"] == 80
    (default,) = listener["DefaultActions"]
    assert default["Type"] == "fixed-response"
    assert default["FixedResponseConfig"]["StatusCode"] == "404"
    forwarded = {}
    for rule in elbv2.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]:
        if rule["IsDefault"]:
            continue
        conditions = {c["Field"]: c for c in rule["Conditions"]}
        paths = tuple(conditions["path-pattern"]["PathPatternConfig"]["Values"])
        methods = tuple(conditions["http-request-method"]["HttpRequestMethodConfig"]["Values"])
        (action,) = rule["Actions"]
        assert action["TargetGroupArn"] == outputs["TargetGroupArn"]
        forwarded[paths] = methods
    assert forwarded == {
        ("/event/*",): ("GET", "HEAD"),
        ("/events",): ("POST",),
        ("/health/check",): ("GET", "HEAD"),
    }


def test_the_internal_load_balancer_forwards_everything_from_the_vpc_only(deployment, moto):
    elbv2 = moto.client("elbv2")
    outputs = deployment.outputs
    (internal,) = [
        lb for lb in elbv2.describe_load_balancers()["LoadBalancers"] if lb["Scheme"] == "internal"
    ]
    assert outputs["LoadBalancersStack"]["InternalUrl"] == f"http://{internal['DNSName']}"
    assert internal["SecurityGroups"] == [
        outputs["SecurityGroupsStack"]["InternalLoadBalancerSecurityGroupId"]
    ]
    (listener,) = elbv2.describe_listeners(LoadBalancerArn=internal["LoadBalancerArn"])["Listeners"]
    (action,) = listener["DefaultActions"]
    assert action["TargetGroupArn"] == outputs["LoadBalancersStack"]["InternalTargetGroupArn"]
    (group,) = moto.client("ec2").describe_security_groups(
        GroupIds=[outputs["SecurityGroupsStack"]["InternalLoadBalancerSecurityGroupId"]]
    )["SecurityGroups"]
    sources = {
        (permission["FromPort"], ip_range["CidrIp"])
        for permission in group["IpPermissions"]
        for ip_range in permission["IpRanges"]
    }
    vpc_cidr = outputs["NetworkStack"]["VpcCidr"]
    assert sources == {(80, vpc_cidr), (443, vpc_cidr)}


def test_host_container_stops_gracefully_with_its_configuration(deployment, moto):
    # moto's ECS keeps the container definitions, but not the launch type, network mode,
    # load balancers or subnets of the service and task definition: test_template_settings
    # checks those on the template.
    outputs = deployment.outputs["ServiceStack"]
    ecs = moto.client("ecs")
    service = ecs.describe_services(
        cluster=outputs["ClusterName"], services=[outputs["ServiceName"]]
    )["services"][0]
    task = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
    (container,) = task["containerDefinitions"]
    assert container["image"] == ROOT_PARAMETERS["HostImageUri"]
    assert container["stopTimeout"] == 60
    assert container["portMappings"] == [{"containerPort": 8080, "protocol": "tcp"}]
    assert container["command"] == ["serve"]
    assert container["logConfiguration"]["options"]["awslogs-group"] == outputs["LogGroupName"]
    variables = {variable["name"]: variable["value"] for variable in container["environment"]}
    secrets = {secret["name"]: secret.get("valueFrom") for secret in container["secrets"]}
    assert_environment_matches(binaries.host(), set(variables) | set(secrets))
    assert variables["LISTEN_ADDR"] == "0.0.0.0:8080"
    assert variables["KINESIS_STREAM_NAME"] == deployment.outputs["StreamStack"]["StreamName"]
    assert variables["PLUGIN_BUCKET"] == deployment.outputs["PluginBucketStack"]["BucketName"]
    assert variables["REDIS_URL"] == STAND_INS["CacheStack"]["RedisUrl"]
    assert variables["AWS_REGION"] == REGION
    assert variables["METRICS_NAMESPACE"] == f"adtrack/{ROOT_PARAMETERS['EnvironmentName']}"
    # ADMIN_TOKEN is there without its value: moto could not create the secret it names.
    assert set(secrets) == {"REDIS_AUTH_TOKEN", "ADMIN_TOKEN"}
    assert secrets["REDIS_AUTH_TOKEN"] == STAND_INS["CacheStack"]["RedisAuthSecretArn"]


def test_host_task_role_names_the_resources_it_uses(deployment, moto):
    outputs = deployment.outputs
    statements = role_statements(deployment, moto, "ServiceStack", "TaskRole")
    bucket = outputs["PluginBucketStack"]["BucketName"]
    assert statements["PutEvents"]["Resource"] == outputs["StreamStack"]["StreamArn"]
    assert set(statements["PutEvents"]["Action"]) == {
        "kinesis:PutRecords", "kinesis:PutRecord", "kinesis:DescribeStreamSummary",
    }
    assert statements["ReadPlugins"]["Resource"] == f"arn:aws:s3:::{bucket}/*"
    assert statements["ListPlugins"]["Resource"] == f"arn:aws:s3:::{bucket}"


def role_statements(deployment, moto, stack: str, role: str) -> dict[str, dict]:
    """The inline policy statements of a role moto created, by Sid."""
    iam = moto.client("iam")
    role_name = deployment.created_resources(stack)[role]["PhysicalResourceId"]
    (policy_name,) = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
    if isinstance(document, str):
        # moto returns a policy created by CloudFormation as the repr of a Python dict.
        document = ast.literal_eval(document)
    return {statement["Sid"]: statement for statement in document["Statement"]}
