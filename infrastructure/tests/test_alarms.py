"""The alarms and the dashboard watch metrics the system emits: each AWS metric is one
the service publishes, with the dimensions it publishes it with, for a resource this
deployment creates; each plugin metric is one the binaries say they write (from their own
code, `describe-deployment`), in the namespace the root gives them."""

import json
import re

import pytest

import binaries
import templates

# Metrics the AWS services publish that this deployment watches: (namespace, metric) ->
# the dimension set it is published with (AWS documentation of each namespace).
AWS_METRICS = {
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible"): {"QueueName"},
    ("AWS/SQS", "ApproximateAgeOfOldestMessage"): {"QueueName"},
    ("AWS/Lambda", "IteratorAge"): {"FunctionName"},
    ("AWS/Lambda", "Errors"): {"FunctionName"},
    ("AWS/Lambda", "Throttles"): {"FunctionName"},
    ("AWS/Lambda", "Invocations"): {"FunctionName"},
    ("AWS/ApplicationELB", "RequestCount"): {"LoadBalancer"},
    ("AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count"): {"LoadBalancer"},
    ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count"): {"LoadBalancer", "TargetGroup"},
    ("AWS/ApplicationELB", "HTTPCode_Target_4XX_Count"): {"LoadBalancer", "TargetGroup"},
    ("AWS/ApplicationELB", "UnHealthyHostCount"): {"LoadBalancer", "TargetGroup"},
    ("AWS/ApplicationELB", "HealthyHostCount"): {"LoadBalancer", "TargetGroup"},
    ("AWS/ApplicationELB", "TargetResponseTime"): {"LoadBalancer", "TargetGroup"},
    ("AWS/Kinesis", "WriteProvisionedThroughputExceeded"): {"StreamName"},
    ("AWS/Kinesis", "IncomingRecords"): {"StreamName"},
    ("AWS/ElastiCache", "DatabaseMemoryUsagePercentage"): {"CacheClusterId"},
    ("AWS/ElastiCache", "Evictions"): {"CacheClusterId"},
    ("AWS/ECS", "CPUUtilization"): {"ClusterName", "ServiceName"},
    ("AWS/ECS", "MemoryUtilization"): {"ClusterName", "ServiceName"},
}

# Which monitoring-stack parameter each AWS dimension takes its value from, and which
# output of which stack (of which resource type) the root fills that parameter with.
DIMENSION_SOURCES = {
    "QueueName": ("DeadLetterQueueName", "ConsumerStack", "AWS::SQS::Queue"),
    "FunctionName": ("FunctionName", "ConsumerStack", "AWS::Lambda::Function"),
    "LoadBalancer": ("LoadBalancerFullName", "LoadBalancersStack", "AWS::ElasticLoadBalancingV2::LoadBalancer"),
    "TargetGroup": ("TargetGroupFullName", "LoadBalancersStack", "AWS::ElasticLoadBalancingV2::TargetGroup"),
    "StreamName": ("StreamName", "StreamStack", "AWS::Kinesis::Stream"),
    "CacheClusterId": ("RedisReplicationGroupId", "CacheStack", "AWS::ElastiCache::ReplicationGroup"),
    "ClusterName": ("ClusterName", "ServiceStack", "AWS::ECS::Cluster"),
    "ServiceName": ("ServiceName", "ServiceStack", "AWS::ECS::Service"),
}

# What the issue asks to be watched: every item needs an alarm.
MUST_BE_WATCHED = {
    "dead-letter queue depth": ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    "iterator age": ("AWS/Lambda", "IteratorAge"),
    "Lambda errors": ("AWS/Lambda", "Errors"),
    "Lambda throttles": ("AWS/Lambda", "Throttles"),
    "ALB 5xx": ("AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count"),
    "target 5xx": ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count"),
    "unhealthy hosts": ("AWS/ApplicationELB", "UnHealthyHostCount"),
    "Kinesis write throttling": ("AWS/Kinesis", "WriteProvisionedThroughputExceeded"),
    "Redis memory": ("AWS/ElastiCache", "DatabaseMemoryUsagePercentage"),
    "Redis evictions": ("AWS/ElastiCache", "Evictions"),
    "plugin failures": ("plugins", "PluginFailures"),
}

CUSTOM_NAMESPACE = {"Ref": "MetricsNamespace"}


def monitoring() -> dict:
    return templates.nested("MonitoringStack")


def alarms() -> dict[str, dict]:
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in monitoring()["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }


def watched(alarm: dict) -> list[tuple]:
    """(namespace, metric, {dimension: value}) of every metric an alarm reads."""
    if "MetricName" in alarm:
        specs = [alarm]
    else:
        specs = [query["MetricStat"]["Metric"] for query in alarm["Metrics"] if "MetricStat" in query]
        assert specs, "an alarm on metric math reads at least one metric"
    return [
        (
            spec["Namespace"],
            spec["MetricName"],
            {dimension["Name"]: dimension["Value"] for dimension in spec.get("Dimensions", [])},
        )
        for spec in specs
    ]


def plugin_metrics() -> dict[str, dict]:
    """The plugin metrics each binary writes, by side: name -> its description."""
    written = {}
    for description in (binaries.host(), binaries.consumer()):
        for metric in description["metrics"]:
            side = dict(metric["fixed_dimensions"])["Side"]
            written.setdefault(side, {})[metric["name"]] = metric
    assert set(written) == {"host", "consumer"}
    return written


def referenced_parameter(value) -> str:
    """The monitoring-stack parameter a dimension value is made of."""
    if isinstance(value, dict) and "Ref" in value:
        return value["Ref"]
    if isinstance(value, dict) and "Fn::Sub" in value:
        (name,) = re.findall(r"\$\{(\w+)\}", value["Fn::Sub"])
        return name
    raise AssertionError(f"dimension value {value!r} names no parameter")


def assert_aws_metric_is_emitted(namespace: str, metric: str, dimensions: set[str], parameters: list[str]):
    assert (namespace, metric) in AWS_METRICS, f"{namespace} {metric} is not a metric this deployment's services publish"
    assert dimensions == AWS_METRICS[namespace, metric], (namespace, metric, dimensions)
    root_parameters = templates.root()["Resources"]["MonitoringStack"]["Properties"]["Parameters"]
    for dimension, parameter in zip(sorted(dimensions), parameters):
        wanted, stack, resource_type = DIMENSION_SOURCES[dimension]
        assert parameter == wanted, (metric, dimension, parameter)
        source = root_parameters[parameter]
        assert source["Fn::GetAtt"][0] == stack, (parameter, source)
        output = source["Fn::GetAtt"][1].removeprefix("Outputs.")
        produced = templates.nested(stack)["Outputs"][output]["Value"]
        (logical_id,) = referenced_resources(produced)
        assert templates.nested(stack)["Resources"][logical_id]["Type"] == resource_type, (
            parameter, produced,
        )


def referenced_resources(value) -> set[str]:
    """The resources an output value is made of (through Ref, GetAtt, Split, Select...)."""
    if isinstance(value, dict):
        if "Ref" in value:
            return {value["Ref"]}
        if "Fn::GetAtt" in value:
            return {value["Fn::GetAtt"][0]}
        return set().union(*(referenced_resources(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(referenced_resources(v) for v in value))
    return set()


@pytest.mark.parametrize("logical_id", sorted(alarms()))
def test_each_alarm_watches_a_metric_the_system_emits(logical_id):
    for namespace, metric, dimensions in watched(alarms()[logical_id]):
        if namespace == CUSTOM_NAMESPACE:
            side = dimensions["Side"]
            described = plugin_metrics()[side]
            assert metric in described, f"the {side} writes no {metric}"
            assert sorted(dimensions) in [sorted(s) for s in described[metric]["dimension_sets"]]
        else:
            parameters = [referenced_parameter(dimensions[name]) for name in sorted(dimensions)]
            assert_aws_metric_is_emitted(namespace, metric, set(dimensions), parameters)


def test_the_plugin_metrics_namespace_is_the_one_the_binaries_are_given():
    resources = templates.root()["Resources"]
    given = {
        stack: resources[stack]["Properties"]["Parameters"]["MetricsNamespace"]
        for stack in ("MonitoringStack", "ServiceStack", "ConsumerStack")
    }
    assert len({json.dumps(value) for value in given.values()}) == 1, given
    (variable,) = {
        metric["namespace_variable"]
        for description in (binaries.host(), binaries.consumer())
        for metric in description["metrics"]
    }
    (container,) = templates.nested("ServiceStack")["Resources"]["TaskDefinition"]["Properties"][
        "ContainerDefinitions"
    ]
    host = {pair["Name"]: pair["Value"] for pair in container["Environment"]}
    consumer = templates.nested("ConsumerStack")["Resources"]["Function"]["Properties"]["Environment"][
        "Variables"
    ]
    assert host[variable] == consumer[variable] == {"Ref": "MetricsNamespace"}


def test_everything_the_operators_need_watched_has_an_alarm():
    covered = set()
    for alarm in alarms().values():
        for namespace, metric, dimensions in watched(alarm):
            covered.add(("plugins", metric) if namespace == CUSTOM_NAMESPACE else (namespace, metric))
    missing = {name for name, metric in MUST_BE_WATCHED.items() if metric not in covered}
    assert not missing
    sides = {
        dimensions.get("Side")
        for alarm in alarms().values()
        for namespace, metric, dimensions in watched(alarm)
        if namespace == CUSTOM_NAMESPACE and metric == "PluginFailures"
    }
    assert sides == {"host", "consumer"}


def test_every_alarm_notifies_the_topic_when_it_fires_and_when_it_clears():
    topic = {"Fn::If": ["CreateTopic", {"Ref": "AlarmTopic"}, {"Ref": "AlarmTopicArn"}]}
    for logical_id, alarm in alarms().items():
        assert alarm["AlarmActions"] == [topic], logical_id
        assert alarm["OKActions"] == [topic], logical_id
        assert "README" in json.dumps(alarm["AlarmDescription"]), logical_id
    parameters = templates.root()["Resources"]["MonitoringStack"]["Properties"]["Parameters"]
    assert parameters["AlarmTopicArn"] == {"Ref": "AlarmTopicArn"}


def dashboard() -> dict:
    """The dashboard body, its ${...} placeholders filled with their own names."""
    body, _ = monitoring()["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    return json.loads(re.sub(r"\$\{([\w:]+)\}", r"<\1>", body.replace('${AlarmArns}', '[]')))


def test_the_dashboard_shows_only_metrics_the_system_emits():
    for widget in dashboard()["widgets"]:
        if widget["type"] != "metric":
            continue
        previous = []
        for line in widget["properties"]["metrics"]:
            if isinstance(line[0], dict):
                expression = line[0]["expression"]
                match = re.fullmatch(
                    r'SELECT SUM\((\w+)\) FROM SCHEMA\("<MetricsNamespace>", ([\w, ]+)\) .*', expression
                )
                assert match, expression
                metric, dimensions = match.group(1), sorted(d.strip() for d in match.group(2).split(","))
                for described in plugin_metrics().values():
                    assert metric in described, metric
                    assert dimensions in [sorted(s) for s in described[metric]["dimension_sets"]]
                continue
            names = [value for value in line if not isinstance(value, dict)]
            names = [previous[i] if name == "." else name for i, name in enumerate(names)]
            previous = names
            namespace, metric, *pairs = names
            dimensions = dict(zip(pairs[::2], pairs[1::2]))
            parameters = [re.search(r"<(\w+)>", dimensions[name]).group(1) for name in sorted(dimensions)]
            assert_aws_metric_is_emitted(namespace, metric, set(dimensions), parameters)


def test_the_dashboard_lists_every_alarm():
    (alarm_widget,) = [w for w in dashboard()["widgets"] if w["type"] == "alarm"]
    _, variables = monitoring()["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    _, arns = variables["AlarmArns"]["Fn::Sub"]
    assert sorted(arn["Fn::GetAtt"][0] for arn in arns.values()) == sorted(alarms())
    assert alarm_widget["properties"]["alarms"] == []
