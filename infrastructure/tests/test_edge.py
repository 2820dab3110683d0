"""The public edge: the internet-facing listener routes the tracking API and nothing else,
for every route the host serves (read from the host's router), with and without a
certificate; plain HTTP is refused unless the demo parameter allows it. The same listener
deployed in moto is checked in test_deploy_in_moto.py."""

import re
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

import templates

HOST_ROUTER = templates.INFRASTRUCTURE.parent / "host/src/http/mod.rs"
# The public API of the design: GET /event/{programId}, POST /events, GET /health/check.
TRACKING_API = {("GET", "/event/{program_id}"), ("POST", "/events"), ("GET", "/health/check")}
CERTIFICATE = "arn:aws:acm:eu-west-1:123456789012:certificate/0d7e4c2a-1111-2222-3333-444455556666"


def host_routes() -> set[tuple[str, str]]:
    """(method, path) of every route in the host's router, as axum declares them."""
    source = HOST_ROUTER.read_text()
    routes = set()
    for path, handlers in re.findall(r'\.route\(\s*"([^"]+)",\s*([^)]*\))', source):
        for method in re.findall(r"\b(get|post|put|delete|patch)\(", handlers):
            routes.add((method.upper(), path))
    assert len(routes) >= 10, f"cannot read the routes of {HOST_ROUTER}: {routes}"
    return routes


def evaluate(expression, parameters: dict, conditions: dict):
    """A CloudFormation condition or rule expression over parameter values."""
    if not isinstance(expression, dict):
        return expression
    ((function, argument),) = expression.items()
    match function:
        case "Ref":
            # A parameter's value; a reference to a resource stays a reference.
            return parameters.get(argument, expression)
        case "Condition":
            return evaluate(conditions[argument], parameters, conditions)
        case "Fn::Equals":
            left, right = (evaluate(value, parameters, conditions) for value in argument)
            return str(left) == str(right)
        case "Fn::Not":
            return not evaluate(argument[0], parameters, conditions)
        case "Fn::Or":
            return any(evaluate(value, parameters, conditions) for value in argument)
        case "Fn::And":
            return all(evaluate(value, parameters, conditions) for value in argument)
        case "Fn::If":
            name, then, otherwise = argument
            chosen = then if evaluate(conditions[name], parameters, conditions) else otherwise
            return evaluate(chosen, parameters, conditions)
    raise AssertionError(f"cannot evaluate {function}")


def accepted(template: dict, **given) -> bool:
    """Whether every rule of `template` accepts the parameters (defaults, then `given`)."""
    parameters = {
        name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()
    } | given
    return all(
        evaluate(assertion["Assert"], parameters, {})
        for rule in template.get("Rules", {}).values()
        for assertion in rule["Assertions"]
    )


@pytest.mark.parametrize("template", ["root", "LoadBalancersStack"])
def test_plain_http_is_refused_unless_the_demo_parameter_allows_it(template):
    template = templates.root() if template == "root" else templates.nested(template)
    assert not accepted(template)
    assert not accepted(template, CertificateArn="", AllowPlainHttp="false")
    assert accepted(template, CertificateArn="", AllowPlainHttp="true")
    assert accepted(template, CertificateArn=CERTIFICATE)
    assert accepted(template, CertificateArn=CERTIFICATE, AllowPlainHttp="false")


def test_the_root_hands_the_certificate_and_the_demo_switch_to_the_load_balancers():
    parameters = templates.root()["Resources"]["LoadBalancersStack"]["Properties"]["Parameters"]
    assert parameters["CertificateArn"] == {"Ref": "CertificateArn"}
    assert parameters["AllowPlainHttp"] == {"Ref": "AllowPlainHttp"}
    assert templates.root()["Parameters"]["AllowPlainHttp"]["Default"] == "false"


class PublicEdge:
    """The internet-facing listeners of the load-balancer stack for one set of parameters:
    what each (port, method, path) request gets."""

    def __init__(self, **given):
        self.template = templates.nested("LoadBalancersStack")
        self.parameters = {
            name: str(spec.get("Default", "")) for name, spec in self.template["Parameters"].items()
        } | given
        self.conditions = self.template["Conditions"]
        self.resources = self.template["Resources"]
        assert accepted(self.template, **given)

    def value(self, expression):
        return evaluate(expression, self.parameters, self.conditions)

    def listeners(self) -> dict[int, str]:
        """Port -> logical id of the public load balancer's listeners that exist."""
        found = {}
        for logical_id, resource in self.resources.items():
            if resource["Type"] != "AWS::ElasticLoadBalancingV2::Listener":
                continue
            if resource["Properties"]["LoadBalancerArn"] != {"Ref": "LoadBalancer"}:
                continue
            condition = resource.get("Condition")
            if condition and not self.value({"Condition": condition}):
                continue
            found[int(self.value(resource["Properties"]["Port"]))] = logical_id
        return found

    def answer(self, port: int, method: str, path: str) -> str:
        """`forward`, `redirect` or `fixed-response NNN` for one request."""
        listener = self.listeners()[port]
        rules = sorted(
            (
                resource["Properties"]
                for resource in self.resources.values()
                if resource["Type"] == "AWS::ElasticLoadBalancingV2::ListenerRule"
                and self.value(resource["Properties"]["ListenerArn"]) == {"Ref": listener}
            ),
            key=lambda rule: rule["Priority"],
        )
        for rule in rules:
            if all(matches(condition, method, path) for condition in rule["Conditions"]):
                (action,) = rule["Actions"]
                return action["Type"]
        (default,) = self.value(self.resources[listener]["Properties"]["DefaultActions"])
        if default["Type"] == "fixed-response":
            return f"fixed-response {default['FixedResponseConfig']['StatusCode']}"
        return default["Type"]


def matches(condition: dict, method: str, path: str) -> bool:
    """Whether a listener rule condition matches, as the load balancer matches it."""
    if condition["Field"] == "path-pattern":
        return any(fnmatchcase(path, pattern) for pattern in condition["PathPatternConfig"]["Values"])
    if condition["Field"] == "http-request-method":
        return method in condition["HttpRequestMethodConfig"]["Values"]
    raise AssertionError(f"the test cannot match {condition['Field']}")


def concrete(path: str) -> str:
    """A request path for an axum route (`{name}` filled in)."""
    return re.sub(r"\{[^}]+\}", "212313", path)


@pytest.mark.parametrize("method, route", sorted(host_routes()))
def test_with_a_certificate_only_the_tracking_api_is_served_and_only_over_https(method, route):
    edge = PublicEdge(CertificateArn=CERTIFICATE)
    assert set(edge.listeners()) == {80, 443}
    assert edge.answer(80, method, concrete(route)) == "redirect"
    expected = "forward" if (method, route) in TRACKING_API else "fixed-response 404"
    assert edge.answer(443, method, concrete(route)) == expected


@pytest.mark.parametrize("method, route", sorted(host_routes()))
def test_in_a_plain_http_demo_only_the_tracking_api_is_served(method, route):
    edge = PublicEdge(CertificateArn="", AllowPlainHttp="true")
    assert set(edge.listeners()) == {80}
    expected = "forward" if (method, route) in TRACKING_API else "fixed-response 404"
    assert edge.answer(80, method, concrete(route)) == expected


def test_the_admin_metrics_and_cache_routes_exist_and_are_not_public():
    routes = host_routes()
    private = {route for route in routes if route not in TRACKING_API}
    for prefix in ("/admin/", "/metrics", "/cache/"):
        assert any(path.startswith(prefix) for _, path in private), prefix
    assert TRACKING_API <= routes
    edge = PublicEdge(CertificateArn=CERTIFICATE)
    # Near misses of the public paths are not forwarded either (the patterns are exact
    # and case-sensitive).
    for near_miss in ("/EVENT/1", "/events/x", "/health/check/x", "/health", "/eventsx"):
        assert edge.answer(443, "POST" if near_miss.startswith("/events") else "GET", near_miss) == (
            "fixed-response 404"
        ), near_miss


def test_a_waf_with_a_rate_limit_guards_the_public_load_balancer():
    resources = templates.nested("LoadBalancersStack")["Resources"]
    acl = resources["WebAcl"]["Properties"]
    (rate,) = [rule for rule in acl["Rules"] if "RateBasedStatement" in rule["Statement"]]
    assert rate["Action"] == {"Block": {}}
    assert rate["Statement"]["RateBasedStatement"]["Limit"] == {"Ref": "WafRequestsPerFiveMinutes"}
    association = resources["WebAclAssociation"]["Properties"]
    assert association["ResourceArn"] == {"Ref": "LoadBalancer"}
    assert resources["WebAcl"]["Condition"] == resources["WebAclAssociation"]["Condition"] == "HasWaf"
    assert templates.root()["Parameters"]["EnableWaf"]["Default"] == "true"
