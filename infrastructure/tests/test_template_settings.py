"""Settings the issue asks for that moto does not apply or cannot create, checked on the
templates themselves: cfn-lint says a template is valid CloudFormation, these say it
declares what this deployment promises (encryption, backups, failover, graceful stops,
least privilege). test_deploy_in_moto checks what moto does apply."""

import json
import re

import pytest

import templates

NO_VALUE = {"Ref": "AWS::NoValue"}


def resource(stack: str, logical_id: str) -> dict:
    return templates.nested(stack)["Resources"][logical_id]["Properties"]


def test_stream_mode_is_a_parameter_and_shards_apply_only_when_provisioned():
    stream = templates.nested("StreamStack")
    properties = stream["Resources"]["EventStream"]["Properties"]
    assert stream["Parameters"]["StreamMode"]["AllowedValues"] == ["ON_DEMAND", "PROVISIONED"]
    assert properties["StreamModeDetails"] == {"StreamMode": {"Ref": "StreamMode"}}
    assert properties["ShardCount"] == {"Fn::If": ["IsProvisioned", {"Ref": "ShardCount"}, NO_VALUE]}
    assert stream["Conditions"]["IsProvisioned"] == {
        "Fn::Equals": [{"Ref": "StreamMode"}, "PROVISIONED"]
    }


def test_stream_is_encrypted_with_the_kinesis_managed_key():
    assert resource("StreamStack", "EventStream")["StreamEncryption"] == {
        "EncryptionType": "KMS",
        "KeyId": "alias/aws/kinesis",
    }


def test_table_has_point_in_time_recovery_and_encryption_and_is_retained():
    table = templates.nested("TableStack")["Resources"]["EventTable"]
    assert table["Properties"]["PointInTimeRecoverySpecification"] == {
        "PointInTimeRecoveryEnabled": True
    }
    assert table["Properties"]["SSESpecification"] == {"SSEEnabled": True}
    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")


def test_plugin_bucket_is_versioned_private_and_tls_only():
    bucket = resource("PluginBucketStack", "PluginBucket")
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    (statement,) = resource("PluginBucketStack", "PluginBucketPolicy")["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_dead_letter_queue_is_tls_only():
    (statement,) = resource("ConsumerStack", "DeadLetterQueuePolicy")["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_retries_and_record_age_of_the_mapping_are_bounded():
    parameters = templates.nested("ConsumerStack")["Parameters"]
    # -1 (retry forever, keep forever) is below both minimums.
    assert parameters["MaximumRetryAttempts"]["MinValue"] == 0
    assert parameters["MaximumRetryAttempts"]["MaxValue"] == 10000
    assert parameters["MaximumRecordAgeInSeconds"]["MinValue"] == 60
    assert parameters["MaximumRecordAgeInSeconds"]["MaxValue"] == 604800


def test_redis_is_multi_az_encrypted_and_authenticated_by_a_generated_secret():
    cache = templates.nested("CacheStack")["Resources"]
    group = cache["RedisReplicationGroup"]["Properties"]
    assert group["Engine"] == "redis"
    assert group["MultiAZEnabled"] is True
    assert group["AutomaticFailoverEnabled"] is True
    assert group["TransitEncryptionEnabled"] is True
    assert group["AtRestEncryptionEnabled"] is True
    assert group["AuthToken"] == {
        "Fn::Sub": "{{resolve:secretsmanager:${RedisAuthSecret}:SecretString}}"
    }
    assert cache["RedisAuthSecret"]["Type"] == "AWS::SecretsManager::Secret"
    assert "GenerateSecretString" in cache["RedisAuthSecret"]["Properties"]
    assert group["SecurityGroupIds"] == [{"Ref": "RedisSecurityGroupId"}]
    assert cache["RedisSubnetGroup"]["Properties"]["SubnetIds"] == {"Ref": "PrivateSubnetIds"}
    parameters = templates.nested("CacheStack")["Parameters"]
    assert parameters["NumCacheClusters"]["MinValue"] >= 2


def test_load_balancer_reaches_only_the_host_tasks_and_redis_reaches_nothing():
    groups = templates.nested("SecurityGroupsStack")["Resources"]
    assert groups["LoadBalancerSecurityGroup"]["Properties"]["SecurityGroupEgress"] == [
        {
            "Description": "Requests and health checks to the host tasks",
            "IpProtocol": "tcp",
            "FromPort": {"Ref": "ContainerPort"},
            "ToPort": {"Ref": "ContainerPort"},
            "DestinationSecurityGroupId": {"Fn::GetAtt": ["HostSecurityGroup", "GroupId"]},
        }
    ]
    # ICMP type 252 code 86 to the broadcast address: a rule that matches no traffic.
    (egress,) = groups["RedisSecurityGroup"]["Properties"]["SecurityGroupEgress"]
    assert (egress["IpProtocol"], egress["FromPort"], egress["ToPort"], egress["CidrIp"]) == (
        "icmp", 252, 86, "255.255.255.255/32",
    )


def test_root_places_redis_in_the_private_subnets():
    parameters = templates.root()["Resources"]["CacheStack"]["Properties"]["Parameters"]
    assert parameters["PrivateSubnetIds"] == {
        "Fn::GetAtt": ["NetworkStack", "Outputs.PrivateSubnetIds"]
    }


def test_host_runs_on_fargate_in_private_subnets_behind_the_load_balancer():
    service = resource("ServiceStack", "Service")
    assert service["LaunchType"] == "FARGATE"
    network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    assert network["Subnets"] == {"Ref": "PrivateSubnetIds"}
    assert [balancer["TargetGroupArn"] for balancer in service["LoadBalancers"]] == [
        {"Ref": "TargetGroupArn"},
        {"Ref": "InternalTargetGroupArn"},
    ]
    assert service["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {
        "Enable": True,
        "Rollback": True,
    }
    task = resource("ServiceStack", "TaskDefinition")
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    assert task["NetworkMode"] == "awsvpc"


def test_host_secrets_come_from_secrets_manager():
    (container,) = resource("ServiceStack", "TaskDefinition")["ContainerDefinitions"]
    assert container["Secrets"] == [
        {"Name": "REDIS_AUTH_TOKEN", "ValueFrom": {"Ref": "RedisAuthSecretArn"}},
        {"Name": "ADMIN_TOKEN", "ValueFrom": {"Ref": "AdminTokenSecret"}},
    ]
    secret = templates.nested("ServiceStack")["Resources"]["AdminTokenSecret"]
    assert "GenerateSecretString" in secret["Properties"]


def test_load_balancers_drain_a_stopping_task_before_its_stop_timeout():
    for group in ("TargetGroup", "InternalTargetGroup"):
        attributes = resource("LoadBalancersStack", group)["TargetGroupAttributes"]
        assert {"Key": "deregistration_delay.timeout_seconds", "Value": {"Ref": "DeregistrationDelaySeconds"}} in attributes
    drain = templates.root()["Parameters"]["HostDeregistrationDelaySeconds"]["Default"]
    stop = templates.root()["Parameters"]["HostStopTimeoutSeconds"]["Default"]
    assert 0 < drain < stop


def test_autoscaling_alone_owns_the_task_count_and_scales_on_cpu_and_requests():
    # A DesiredCount in the template would reset a scaled-out service on every deploy.
    assert "DesiredCount" not in resource("ServiceStack", "Service")
    assert "HostDesiredCount" not in templates.root()["Parameters"]
    target = resource("ServiceStack", "ScalableTarget")
    assert target["ScalableDimension"] == "ecs:service:DesiredCount"
    assert (target["MinCapacity"], target["MaxCapacity"]) == ({"Ref": "MinTasks"}, {"Ref": "MaxTasks"})
    metrics = {}
    for logical_id, declared in templates.nested("ServiceStack")["Resources"].items():
        if declared["Type"] == "AWS::ApplicationAutoScaling::ScalingPolicy":
            properties = declared["Properties"]
            assert properties["PolicyType"] == "TargetTrackingScaling"
            assert properties["ScalingTargetId"] == {"Ref": "ScalableTarget"}
            specification = properties["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]
            metrics[specification["PredefinedMetricType"]] = specification.get("ResourceLabel")
    assert metrics == {
        "ECSServiceAverageCPUUtilization": None,
        "ALBRequestCountPerTarget": {"Fn::Sub": "${LoadBalancerFullName}/${TargetGroupFullName}"},
    }


# Actions that cannot be scoped to a resource, so "*" is the least privilege.
UNSCOPABLE = {
    "ecr:GetAuthorizationToken",
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
}


def allow_statements():
    for name, template in templates.all_templates().items():
        for logical_id, declared in template["Resources"].items():
            if declared["Type"] != "AWS::IAM::Role":
                continue
            for policy in declared["Properties"].get("Policies", []):
                for statement in policy["PolicyDocument"]["Statement"]:
                    if statement["Effect"] == "Allow":
                        yield f"{name}:{logical_id}:{statement.get('Sid')}", statement


@pytest.mark.parametrize("where, statement", list(allow_statements()))
def test_no_wildcard_resource_where_one_can_be_named(where, statement):
    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    assert not any("*" in action for action in actions), where
    resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    if "*" in resources:
        assert set(actions) <= UNSCOPABLE, where


def test_every_role_uses_inline_policies_only():
    for name, template in templates.all_templates().items():
        for logical_id, declared in template["Resources"].items():
            if declared["Type"] == "AWS::IAM::Role":
                assert "ManagedPolicyArns" not in declared["Properties"], f"{name}:{logical_id}"


def test_every_log_group_has_a_retention():
    groups = [
        (name, logical_id, declared["Properties"])
        for name, template in templates.all_templates().items()
        for logical_id, declared in template["Resources"].items()
        if declared["Type"] == "AWS::Logs::LogGroup"
    ]
    assert len(groups) == 4
    for name, logical_id, properties in groups:
        assert properties["RetentionInDays"] == {"Ref": "LogRetentionDays"}, f"{name}:{logical_id}"


def test_root_outputs_what_a_user_needs():
    outputs = templates.root()["Outputs"]
    assert {
        "EndpointUrl", "StreamName", "TableName", "PluginBucketName", "DeadLetterQueueUrl",
    } <= set(outputs)


def test_network_spans_two_availability_zones():
    subnets = {
        logical_id: declared["Properties"]["AvailabilityZone"]
        for logical_id, declared in templates.nested("NetworkStack")["Resources"].items()
        if declared["Type"] == "AWS::EC2::Subnet"
    }
    for kind in ("Public", "Private"):
        assert subnets[f"{kind}Subnet1"] != subnets[f"{kind}Subnet2"]


def test_the_consumer_has_reserved_concurrency_from_a_parameter():
    assert resource("ConsumerStack", "Function")["ReservedConcurrentExecutions"] == {
        "Ref": "ReservedConcurrency"
    }
    parameters = templates.root()["Resources"]["ConsumerStack"]["Properties"]["Parameters"]
    assert parameters["ReservedConcurrency"] == {"Ref": "ConsumerReservedConcurrency"}


def test_the_stream_keeps_records_seven_days_by_default_for_the_dead_letter_replay():
    assert templates.root()["Parameters"]["StreamRetentionHours"]["Default"] == 168
    assert templates.nested("StreamStack")["Parameters"]["RetentionPeriodHours"]["Default"] == 168


def test_stateful_resources_survive_deletion_and_replacement():
    for stack, logical_id in (
        ("TableStack", "EventTable"),
        ("PluginBucketStack", "PluginBucket"),
        ("ConsumerStack", "DeadLetterQueue"),
        ("LoadBalancersStack", "AccessLogBucket"),
    ):
        declared = templates.nested(stack)["Resources"][logical_id]
        assert (declared["DeletionPolicy"], declared["UpdateReplacePolicy"]) == ("Retain", "Retain"), logical_id
    assert resource("TableStack", "EventTable")["DeletionProtectionEnabled"] is True
    for balancer in ("LoadBalancer", "InternalLoadBalancer"):
        attributes = resource("LoadBalancersStack", balancer)["LoadBalancerAttributes"]
        assert {"Key": "deletion_protection.enabled", "Value": "true"} in attributes


def test_the_image_repository_scans_on_push_keeps_tags_immutable_and_expires_old_images():
    bootstrap = templates.load(templates.BOOTSTRAP_TEMPLATE)["Resources"]
    repository = bootstrap["HostRepository"]["Properties"]
    assert repository["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert repository["ImageTagMutability"] == "IMMUTABLE"
    (rule,) = json.loads(repository["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
    assert rule["selection"]["countType"] == "imageCountMoreThan"
    assert rule["action"] == {"type": "expire"}


def test_one_architecture_parameter_drives_the_function_and_the_task():
    root = templates.root()
    assert root["Parameters"]["Architecture"]["AllowedValues"] == ["x86-64", "arm64"]
    assert "HostArchitecture" not in root["Parameters"]
    assert "ConsumerArchitecture" not in root["Parameters"]
    resources = root["Resources"]
    assert resources["ConsumerStack"]["Properties"]["Parameters"]["Architecture"] == {
        "Fn::FindInMap": ["CpuArchitecture", {"Ref": "Architecture"}, "Lambda"]
    }
    assert resources["ServiceStack"]["Properties"]["Parameters"]["Architecture"] == {
        "Fn::FindInMap": ["CpuArchitecture", {"Ref": "Architecture"}, "Ecs"]
    }
    mapping = root["Mappings"]["CpuArchitecture"]
    assert mapping == {
        "x86-64": {"Ecs": "X86_64", "Lambda": "x86_64"},
        "arm64": {"Ecs": "ARM64", "Lambda": "arm64"},
    }


def test_interface_endpoints_keep_aws_calls_off_the_nat_gateways_by_default():
    network = templates.nested("NetworkStack")
    assert templates.root()["Parameters"]["InterfaceEndpoints"]["Default"] == "true"
    services = {
        declared["Properties"]["ServiceName"]["Fn::Sub"].split("${AWS::Region}.")[1]
        for declared in network["Resources"].values()
        if declared["Type"] == "AWS::EC2::VPCEndpoint"
        and declared["Properties"]["VpcEndpointType"] == "Interface"
    }
    assert services == {"kinesis-streams", "secretsmanager", "ecr.api", "ecr.dkr", "logs", "sqs"}
    for declared in network["Resources"].values():
        if declared["Type"] == "AWS::EC2::VPCEndpoint" and declared["Properties"]["VpcEndpointType"] == "Interface":
            assert declared["Condition"] == "HasInterfaceEndpoints"
            assert declared["Properties"]["PrivateDnsEnabled"] is True


def test_both_load_balancers_log_every_request_to_the_access_log_bucket():
    # moto ignores load balancer attributes, so this is checked on the template.
    for balancer, prefix in (("LoadBalancer", "public"), ("InternalLoadBalancer", "internal")):
        declared = templates.nested("LoadBalancersStack")["Resources"][balancer]
        attributes = {a["Key"]: a["Value"] for a in declared["Properties"]["LoadBalancerAttributes"]}
        assert attributes["access_logs.s3.enabled"] == "true"
        assert attributes["access_logs.s3.bucket"] == {"Ref": "AccessLogBucket"}
        assert attributes["access_logs.s3.prefix"] == prefix
        assert declared["DependsOn"] == "AccessLogBucketPolicy"
    (delivery,) = [
        statement
        for statement in resource("LoadBalancersStack", "AccessLogBucketPolicy")["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Allow"
    ]
    assert delivery["Action"] == "s3:PutObject"


def test_the_consumers_attempt_counters_expire_by_the_attribute_the_code_writes():
    source = (templates.INFRASTRUCTURE.parent / "consumer/src/aws/attempts.rs").read_text()
    (attribute,) = re.findall(r'pub const EXPIRES_AT: &str = "([^"]+)";', source)
    assert resource("TableStack", "EventTable")["TimeToLiveSpecification"] == {
        "AttributeName": attribute,
        "Enabled": True,
    }
