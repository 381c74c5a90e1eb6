"""Name rules with the API server's own messages."""

from __future__ import annotations

import pytest

from labkit.core.names import is_dns1123_label, name_errors, name_rule


@pytest.mark.parametrize(("group", "plural", "rule"), [
    ("", "services", "dns1035"), ("", "namespaces", "label"), ("apps", "deployments", "subdomain"),
    ("networking.istio.io", "virtualservices", "subdomain"),
])
def test_each_resource_has_its_rule(group: str, plural: str, rule: str) -> None:
    assert name_rule(group, plural) == rule


def test_valid_names_have_no_errors() -> None:
    assert name_errors("istio-eastwestgateway.v1") == []
    assert name_errors("sample", "label") == []
    assert name_errors("helloworld", "dns1035") == []


def test_invalid_names_explain_themselves_as_kubernetes_does() -> None:
    (upper,) = name_errors("Hello", "subdomain")
    assert upper.startswith("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters")
    (dotted,) = name_errors("a.b", "label")
    assert dotted.startswith("a lowercase RFC 1123 label must consist")
    (digit,) = name_errors("1web", "dns1035")
    assert "start with an alphabetic character" in digit
    too_long = name_errors("a" * 64, "label")
    assert too_long == ["must be no more than 63 characters"]
    assert not is_dns1123_label("network_1")
