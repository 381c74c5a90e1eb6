"""Label and field selectors as ``kubectl get -l`` / ``--field-selector`` and controllers use them."""

from __future__ import annotations

import pytest

from labkit.core.selectors import (
    label_selector_from_dict,
    matches_label_selector,
    parse_field_selector,
    parse_label_selector,
    selector_from_labels,
    selector_string,
)
from labkit.errors import InvalidSelectorError

HELLO_V1 = {"app": "helloworld", "version": "v1", "istio.io/rev": "default"}
HELLO_V2 = {"app": "helloworld", "version": "v2"}
SLEEP = {"app": "sleep"}
GATEWAY = {"istio": "eastwestgateway", "topology.istio.io/network": "network1", "replicas": "3"}
PODS = {"hello-v1": HELLO_V1, "hello-v2": HELLO_V2, "sleep": SLEEP, "gateway": GATEWAY, "bare": {}}


def selected(selector: str) -> set[str]:
    parsed = parse_label_selector(selector)
    return {name for name, labels in PODS.items() if parsed.matches(labels)}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", {"hello-v1", "hello-v2", "sleep", "gateway", "bare"}),
        ("app=helloworld", {"hello-v1", "hello-v2"}),
        ("app==helloworld", {"hello-v1", "hello-v2"}),
        ("app!=helloworld", {"sleep", "gateway", "bare"}),
        ("app=helloworld,version=v2", {"hello-v2"}),
        ("app in (helloworld, sleep)", {"hello-v1", "hello-v2", "sleep"}),
        ("version notin (v1)", {"hello-v2", "sleep", "gateway", "bare"}),
        ("version", {"hello-v1", "hello-v2"}),
        ("!version", {"sleep", "gateway", "bare"}),
        ("istio.io/rev=default", {"hello-v1"}),
        ("topology.istio.io/network=network1", {"gateway"}),
        ("replicas>2", {"gateway"}),
        ("replicas<3", set()),
        (" app = sleep ", {"sleep"}),
        ("app in (helloworld),!version", set()),
    ],
)
def test_label_selector_grammar_selects_like_kubectl(selector: str, expected: set[str]) -> None:
    assert selected(selector) == expected


def test_empty_value_selects_labels_set_to_empty_string() -> None:
    selector = parse_label_selector("canary=")
    assert selector.matches({"canary": ""})
    assert not selector.matches({"canary": "true"})
    assert not selector.matches({})


def test_label_selector_prints_back_in_canonical_form() -> None:
    # Scale.status.selector and `kubectl describe` show this form.
    text = "app=helloworld,version in (v1,v2),!canary,tier"
    assert str(parse_label_selector(text)) == text
    assert str(parse_label_selector("app == web")) == "app=web"


@pytest.mark.parametrize(
    ("selector", "fragment"),
    [
        ("app in (helloworld", "found end of string, expected: ',' or ')'"),
        ("app helloworld", "found 'helloworld', expected: '=', '!=', '==', 'in', 'notin'"),
        ("app in ()", "values set can't be empty"),
        ("=helloworld", "found '=', expected: identifier"),
        ("app in helloworld", "found 'helloworld', expected: '('"),
        ("!app=web", "found '=', expected: ',' or 'end of string'"),
        ("replicas>three", "the value must be an integer"),
        ("-app=web", 'invalid label key "-app"'),
        ("app=hello world", "found 'world', expected: ',' or 'end of string'"),
        ("app=web,", "found end of string, expected: identifier"),
    ],
)
def test_malformed_label_selector_is_refused_quoting_it(selector: str, fragment: str) -> None:
    with pytest.raises(InvalidSelectorError) as caught:
        parse_label_selector(selector)
    assert f'"{selector}"' in str(caught.value)
    assert fragment in str(caught.value)


POD_SCHEDULED = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "hello-v1-7c8f", "namespace": "sample"},
    "spec": {"nodeName": "cluster1-node", "containers": [{"name": "helloworld"}]},
    "status": {"phase": "Running"},
}
POD_PENDING = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "hello-v2-5d9b", "namespace": "sample"},
    "spec": {"containers": [{"name": "helloworld"}]},
    "status": {"phase": "Pending"},
}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("metadata.name=hello-v1-7c8f", {"hello-v1-7c8f"}),
        ("metadata.namespace=sample", {"hello-v1-7c8f", "hello-v2-5d9b"}),
        ("metadata.namespace!=sample", set()),
        ("status.phase=Running", {"hello-v1-7c8f"}),
        ("status.phase!=Running", {"hello-v2-5d9b"}),
        ("spec.nodeName=", {"hello-v2-5d9b"}),  # unscheduled pods, as the scheduler asks
        ("spec.nodeName==cluster1-node,status.phase=Running", {"hello-v1-7c8f"}),
        ("spec.nodeName=cluster1-node,status.phase=Pending", set()),
    ],
)
def test_field_selector_on_pods(selector: str, expected: set[str]) -> None:
    parsed = parse_field_selector(selector)
    assert {p["metadata"]["name"] for p in (POD_SCHEDULED, POD_PENDING) if parsed.matches(p)} == expected


def test_field_selector_on_secrets_and_events() -> None:
    secret = {"kind": "Secret", "metadata": {"name": "cacerts"}, "type": "Opaque"}
    token = {
        "kind": "Secret",
        "metadata": {"name": "istio-remote-secret"},
        "type": "kubernetes.io/service-account-token",
    }
    by_type = parse_field_selector("type=kubernetes.io/service-account-token")
    assert [s["metadata"]["name"] for s in (secret, token) if by_type.matches(s)] == ["istio-remote-secret"]

    event = {
        "kind": "Event",
        "metadata": {"name": "web.17a"},
        "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default", "uid": "u-1"},
    }
    assert parse_field_selector("involvedObject.kind=Pod,involvedObject.name=web-1").matches(event)
    assert not parse_field_selector("involvedObject.uid=u-2").matches(event)


def test_field_selector_values_compare_as_strings() -> None:
    node = {
        "kind": "Node",
        "metadata": {"name": "n1"},
        "spec": {"unschedulable": True},
        "status": {"port": 10250},
    }
    assert parse_field_selector("spec.unschedulable=true").matches(node)
    assert parse_field_selector("status.port=10250").matches(node)


def test_field_selector_escaped_comma_is_part_of_the_value() -> None:
    obj = {"metadata": {"name": "a,b"}}
    assert parse_field_selector(r"metadata.name=a\,b").matches(obj)
    assert parse_field_selector("").matches(obj)


@pytest.mark.parametrize("selector", ["metadata.name", "=web", r"metadata.name=a\qb", "metadata..name=x"])
def test_malformed_field_selector_is_refused_quoting_it(selector: str) -> None:
    with pytest.raises(InvalidSelectorError) as caught:
        parse_field_selector(selector)
    assert f'"{selector}"' in str(caught.value)


def test_deployment_label_selector_with_expressions() -> None:
    selector = {
        "matchLabels": {"app": "helloworld"},
        "matchExpressions": [
            {"key": "version", "operator": "In", "values": ["v1", "v2"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "istio.io/rev", "operator": "Exists"},
            {"key": "tier", "operator": "NotIn", "values": ["db"]},
        ],
    }
    assert matches_label_selector(selector, HELLO_V1)
    assert not matches_label_selector(selector, HELLO_V2)  # no istio.io/rev
    assert not matches_label_selector(selector, {**HELLO_V1, "canary": "yes"})
    assert not matches_label_selector(selector, {**HELLO_V1, "tier": "db"})
    assert (
        str(label_selector_from_dict(selector))
        == "app=helloworld,version in (v1,v2),!canary,istio.io/rev,tier notin (db)"
    )
    # kubectl's own form (``-o wide``, ``logs -l``) sorts by key.
    assert selector_string(selector) == "app=helloworld,!canary,istio.io/rev,tier notin (db),version in (v1,v2)"


def test_null_label_selector_selects_nothing_and_empty_selects_everything() -> None:
    assert not matches_label_selector(None, HELLO_V1)
    assert matches_label_selector({}, HELLO_V1)
    assert matches_label_selector({}, None)


@pytest.mark.parametrize(
    ("selector", "fragment"),
    [
        (
            {"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["x"]}]},
            '"Equals" is not a valid label selector operator',
        ),
        (
            {"matchExpressions": [{"key": "app", "operator": "In", "values": []}]},
            "must be specified when `operator` is 'In'",
        ),
        (
            {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]},
            "may not be specified when `operator` is 'Exists'",
        ),
    ],
)
def test_invalid_label_selector_object_is_refused(selector: dict, fragment: str) -> None:
    with pytest.raises(InvalidSelectorError) as caught:
        label_selector_from_dict(selector)
    assert fragment in str(caught.value)


def test_service_selector_map_requires_every_label() -> None:
    selector = selector_from_labels({"app": "helloworld", "version": "v2"})
    assert [name for name, labels in PODS.items() if selector.matches(labels)] == ["hello-v2"]
    assert str(selector) == "app=helloworld,version=v2"
