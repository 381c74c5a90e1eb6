"""Authorization a trainer can show: ``kubectl auth``, ``--as``, ``kubectl create token`` — and Kubernetes' wording."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from labkit.emulator import launching
from labkit.istio.rendering import READER_ACCOUNT, reader_objects

from .conftest import Kubectl

pytestmark = [pytest.mark.filterwarnings("ignore::ResourceWarning")]

CONTEXT = "cluster3"
NAMESPACE = "access-demo"
READER = f"system:serviceaccount:istio-system:{READER_ACCOUNT}"
NOBODY = f"system:serviceaccount:{NAMESPACE}:nobody"


@pytest.fixture(scope="module")
def api(emulator: launching.Emulator, kubectl: Kubectl) -> Iterator[client.ApiClient]:
    with config.new_client_from_config(str(emulator.kubeconfig), context=CONTEXT) as api_client:
        core = client.CoreV1Api(api_client)
        for name in (NAMESPACE, "istio-system"):
            try:
                core.create_namespace({"metadata": {"name": name}})
            except ApiException as exc:
                if exc.status != 409:
                    raise
        core.create_namespaced_service_account(NAMESPACE, {"metadata": {"name": "nobody"}})
        core.create_namespaced_secret(NAMESPACE, {"metadata": {"name": "precious"}, "stringData": {"k": "v"}})
        # What an Istio install creates for remote secrets: the reader account and its cluster-wide read role.
        kubectl("--context", CONTEXT, "apply", "-f", "-", input=yaml.safe_dump_all(reader_objects("istio-system")))
        yield api_client
        core.delete_namespace(NAMESPACE)


def run(kubectl: Kubectl, *args: str) -> tuple[int, str, str]:
    result = kubectl("--context", CONTEXT, *args, check=False)
    return result.returncode, result.stdout, result.stderr


def test_can_i_answers_from_rbac_for_the_istio_reader(api: client.ApiClient, kubectl: Kubectl) -> None:
    assert run(kubectl, "auth", "can-i", "list", "secrets", f"--as={READER}") == (0, "yes\n", "")
    assert run(kubectl, "auth", "can-i", "list", "secrets", "-A", f"--as={READER}") == (0, "yes\n", "")
    assert run(kubectl, "auth", "can-i", "create", "configmaps", f"--as={READER}") == (1, "no\n", "")
    listed = run(kubectl, "auth", "can-i", "--list", f"--as={READER}")[1].splitlines()
    assert listed[0].split() == ["Resources", "Non-Resource", "URLs", "Resource", "Names", "Verbs"]
    secrets = next(line for line in listed if line.startswith("secrets "))
    assert secrets.split()[-3:] == ["[get", "list", "watch]"]
    assert any(line.split()[0] == "selfsubjectaccessreviews.authorization.k8s.io" for line in listed)


def test_a_service_account_without_rights_is_refused_in_kubernetes_words(api: client.ApiClient,
                                                                        kubectl: Kubectl) -> None:
    assert run(kubectl, "get", "secrets", "-n", NAMESPACE, f"--as={NOBODY}") == (
        1, "", f'Error from server (Forbidden): secrets is forbidden: User "{NOBODY}" cannot list resource "secrets" '
               f'in API group "" in the namespace "{NAMESPACE}"\n')
    assert run(kubectl, "get", "secret", "precious", "-n", NAMESPACE, f"--as={NOBODY}")[2] == (
        f'Error from server (Forbidden): secrets "precious" is forbidden: User "{NOBODY}" cannot get resource '
        f'"secrets" in API group "" in the namespace "{NAMESPACE}"\n')
    assert run(kubectl, "get", "secrets", "-n", NAMESPACE)[0] == 0  # the admin still can


def test_impersonation_needs_the_impersonate_verb(api: client.ApiClient, kubectl: Kubectl) -> None:
    token = run(kubectl, "create", "token", "nobody", "-n", NAMESPACE)[1].strip()
    assert run(kubectl, "get", "pods", "-n", NAMESPACE, f"--token={token}", "--as=admin")[2] == (
        f'Error from server (Forbidden): users "admin" is forbidden: User "{NOBODY}" cannot impersonate resource '
        f'"users" in API group "" at the cluster scope\n')
    assert run(kubectl, "auth", "whoami", "--as=alice", "--as-group=devs")[1].splitlines()[1:] == [
        "Username    alice", "Groups      [devs system:authenticated]"]


def test_create_token_gives_a_token_the_api_server_accepts_for_its_audience_and_lifetime(
        api: client.ApiClient, kubectl: Kubectl) -> None:
    code, token, _ = run(kubectl, "create", "token", "nobody", "-n", NAMESPACE, "--duration=15m")
    assert code == 0
    whoami = run(kubectl, "auth", "whoami", f"--token={token.strip()}")[1]
    assert "Username    system:serviceaccount:access-demo:nobody" in whoami
    assert f"Groups      [system:serviceaccounts system:serviceaccounts:{NAMESPACE} system:authenticated]" in whoami
    assert run(kubectl, "auth", "can-i", "list", "pods", "-n", NAMESPACE, f"--token={token.strip()}")[1] == "no\n"

    foreign = run(kubectl, "create", "token", "nobody", "-n", NAMESPACE, "--audience=istio-ca")[1].strip()
    assert "Unauthorized" in run(kubectl, "get", "pods", f"--token={foreign}")[2]
    review = client.AuthenticationV1Api(api).create_token_review(
        {"spec": {"token": foreign, "audiences": ["istio-ca"]}})
    assert review.status.authenticated and review.status.audiences == ["istio-ca"]
    assert review.status.user.username == NOBODY

    requested = client.CoreV1Api(api).create_namespaced_service_account_token(
        "nobody", NAMESPACE, {"spec": {"expirationSeconds": 1200}})
    remaining = requested.status.expiration_timestamp - dt.datetime.now(dt.UTC)
    assert 1100 < remaining.total_seconds() <= 1200
    assert "may not specify a duration less than 10 minutes" in run(
        kubectl, "create", "token", "nobody", "-n", NAMESPACE, "--duration=1m")[2]


def test_access_reviews_through_the_python_client(api: client.ApiClient) -> None:
    authorization = client.AuthorizationV1Api(api)
    mine = authorization.create_self_subject_access_review(
        {"spec": {"resourceAttributes": {"verb": "delete", "resource": "pods", "namespace": NAMESPACE}}})
    assert mine.status.allowed
    theirs = authorization.create_subject_access_review(
        {"spec": {"user": READER, "groups": ["system:serviceaccounts"],
                  "resourceAttributes": {"verb": "watch", "resource": "secrets", "namespace": "kube-system"}}})
    assert theirs.status.allowed
    refused = authorization.create_subject_access_review(
        {"spec": {"user": NOBODY, "resourceAttributes": {"verb": "list", "resource": "secrets",
                                                           "namespace": NAMESPACE}}})
    assert not refused.status.allowed
    assert client.AuthenticationV1Api(api).create_self_subject_review({}).status.user_info.username == \
        "kubernetes-admin"
