"""Manifest parsing, label selectors and kubectl-style reporting of labkit.kube.apply (no cluster needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.errors import ManifestError
from labkit.kube import AppliedObject, AppliedObjects, load_documents, selector_matches

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"

BROKEN = """\
apiVersion: v1
kind: Service
metadata:
  name: helloworld
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: helloworld-v1
spec:
  replicas: 1
   selector: {}
"""


def test_a_sample_file_parses_into_numbered_documents_with_lines() -> None:
    documents = load_documents(SAMPLES / "helloworld.yaml")
    assert [(d.kind, d.name, d.index) for d in documents] == [
        ("Service", "helloworld", 1), ("Deployment", "helloworld-v1", 2), ("Deployment", "helloworld-v2", 3)]
    assert documents[0].line == 4  # after the comment lines
    assert documents[1].where == f"{SAMPLES / 'helloworld.yaml'}: document 2 (line {documents[1].line})"


def test_bad_yaml_names_the_file_the_document_and_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    with pytest.raises(ManifestError) as error:
        load_documents(path)
    message = str(error.value)
    assert message.startswith(f"{path}: document 2, line 12, column")
    assert "is not valid YAML" in message and "indentation" in message


def test_a_key_given_twice_is_refused_naming_both_lines() -> None:
    text = ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n"
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n"
            "  selector: {}\n  replicas: 3\n")
    with pytest.raises(ManifestError) as refused:
        load_documents(text)
    assert refused.value.problems == ('<string>: document 2 (line 5): line 12: key "replicas" is given twice '
                                      '(first at line 10); keep one of them',)


def test_an_undeclared_field_points_at_kubectl_explain() -> None:
    from labkit.kube.applying import _field_hint

    message = ("failed to create typed patch object (sample/web; /v1, Kind=Service): .spec.ports[0].nodeport: "
               "field not declared in schema")
    assert _field_hint("Service", message) == (" (check the spelling of 'nodeport': `kubectl explain "
                                               "service.spec.ports` lists the fields there)")
    assert _field_hint("Service", 'Service "x" is invalid: spec.ports[0].port: Invalid value: 0') == ""


def test_yaml_text_and_file_names_are_told_apart() -> None:
    assert load_documents("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")[0].origin == "<string>"
    with pytest.raises(ManifestError, match=r"missing\.yaml: cannot read the manifest"):
        load_documents("missing.yaml")


def test_objects_without_kind_or_name_are_refused_all_at_once() -> None:
    with pytest.raises(ManifestError) as error:
        load_documents([{"apiVersion": "v1", "kind": "ConfigMap"}, {"metadata": {"name": "x"}}])
    assert error.value.problems == (
        "<objects>: document 1 (ConfigMap): missing metadata.name; every object needs apiVersion, kind and "
        "metadata.name",
        "<objects>: document 2: missing apiVersion, kind; every object needs apiVersion, kind and metadata.name")


def test_kind_list_is_expanded_and_empty_documents_skipped() -> None:
    text = ("---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n"
            "- {apiVersion: v1, kind: Secret, metadata: {name: b}}\n---\n")
    assert [(d.kind, d.name) for d in load_documents(text)] == [("ConfigMap", "a"), ("Secret", "b")]


@pytest.mark.parametrize(("selector", "expected"), [
    ("", True),
    ("service=helloworld", False),
    ("version=v1", True),
    ("version==v1,app=helloworld", True),
    ("version!=v1", False),
    ("version in (v1, v2)", True),
    ("version notin (v1)", False),
    ("app", True),
    ("!app", False),
    ("!service", True),
])
def test_label_selectors_match_as_kubectl_apply_l(selector: str, expected: bool) -> None:
    assert selector_matches(selector, {"app": "helloworld", "version": "v1"}) is expected


def test_a_selector_that_does_not_parse_is_an_error() -> None:
    with pytest.raises(ManifestError, match="cannot parse the label selector"):
        selector_matches("app=(x", {})


def test_applied_objects_print_like_kubectl() -> None:
    objects = AppliedObjects([
        AppliedObject("Service", "", "helloworld", "sample", "created"),
        AppliedObject("Deployment", "apps", "helloworld-v1", "sample", "unchanged"),
        AppliedObject("CustomResourceDefinition", "apiextensions.k8s.io", "gateways.networking.istio.io", None,
                      "configured", dry_run=True),
        AppliedObject("Service", "", "helloworld", "sample", "deleted"),
    ])
    assert str(objects).splitlines() == [
        "service/helloworld created",
        "deployment.apps/helloworld-v1 unchanged",
        "customresourcedefinition.apiextensions.k8s.io/gateways.networking.istio.io configured (server dry run)",
        'service "helloworld" deleted',
    ]
