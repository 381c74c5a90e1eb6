"""Generate ``labkit/emulator/api/protobuf_tables.py`` from Kubernetes' own definitions.

The embedded API server decodes the protobuf bodies kubectl sends (``kubectl create …``). What it needs per
message is, for each field number: the JSON name, the kind of value, whether it repeats, and whether a zero
value is meaningful. Kubernetes states all of it in two upstream places, and this script reads both instead
of copying numbers by hand:

* ``generated.proto`` (``k8s.io/api/{core,apps,batch,rbac,authentication,authorization}/v1``, ``k8s.io/apimachinery``
  ``meta/v1``): field numbers, protobuf types, ``repeated`` and ``map<…>``;
* ``types.go`` next to it: the Go struct tags, which give the JSON name (``json:"port"``), ``omitempty``,
  embedded structs flattened into their parent (``json:",inline"``) and pointer fields (``*int32``). A field
  whose zero value JSON would show — a pointer, or a field without ``omitempty`` — is marked ``keep``.

Only the messages reachable from the kinds the decoder accepts are written. Usage, with checkouts of
``github.com/kubernetes/api`` and ``github.com/kubernetes/apimachinery`` (any release branch)::

    python tools/generate_protobuf_tables.py --api ../api --apimachinery ../apimachinery

A directory may also be a bare git repository: the files are then read at ``HEAD`` (``git show``).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

OUTPUT = Path(__file__).resolve().parents[1] / "labkit" / "emulator" / "api" / "protobuf_tables.py"

# (repository, package directory): the packages whose messages the decoder may meet.
PACKAGES = (
    ("api", "core/v1"),
    ("api", "apps/v1"),
    ("api", "batch/v1"),
    ("api", "rbac/v1"),
    ("api", "authentication/v1"),
    ("api", "authorization/v1"),
    ("apimachinery", "pkg/apis/meta/v1"),
)

# The kinds kubectl sends as protobuf in the labs (``kubectl create namespace|secret|configmap|deployment|
# serviceaccount|role|clusterrole|rolebinding|clusterrolebinding``, ``kubectl expose``).
ROOTS = {
    ("v1", "Namespace"), ("v1", "Secret"), ("v1", "ConfigMap"), ("v1", "Service"), ("v1", "ServiceAccount"),
    ("apps/v1", "Deployment"),
    # ``kubectl create job`` and ``kubectl create cronjob``.
    ("batch/v1", "Job"), ("batch/v1", "CronJob"),
    ("rbac.authorization.k8s.io/v1", "Role"), ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"), ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    # ``kubectl create token``, ``auth whoami``, ``auth can-i`` and ``auth can-i --list``. (SubjectAccessReview and
    # TokenReview come from other clients as JSON; their ExtraValue would clash with authentication's.)
    ("authentication.k8s.io/v1", "TokenRequest"), ("authentication.k8s.io/v1", "SelfSubjectReview"),
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"), ("authorization.k8s.io/v1", "SelfSubjectRulesReview"),
}

# Messages that are scalars in JSON: the decoder has a reader for each.
SPECIAL = {
    "k8s.io.apimachinery.pkg.apis.meta.v1.Time": "time",
    "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime": "time",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "intstr",
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "quantity",
}
SCALARS = {"string", "bytes", "bool", "int32", "int64"}

# Fields left out on purpose: the server owns managedFields, and kubectl never sends them.
# UserInfo.extra and TokenRequestSpec.attestations map to named Go slices (``[]string``) with no struct to read
# tags from; the first lives in a SelfSubjectReview's status, which the server fills and kubectl sends empty, the
# second is an alpha field kubectl does not send.
# JobSpec.scheduling is an alpha field (workload-aware scheduling) whose messages live in scheduling/v1alpha3; kubectl
# does not send it.
SKIPPED = {("ObjectMeta", "managedFields"), ("UserInfo", "extra"), ("TokenRequestSpec", "attestations"),
           ("JobSpec", "scheduling")}

_MESSAGE = re.compile(r"^message (\w+) \{")
_FIELD = re.compile(r"^\s*(optional|repeated)?\s*(map<\s*string\s*,\s*([\w.]+)\s*>|[\w.]+)\s+(\w+)\s*=\s*(\d+);")
_STRUCT = re.compile(r"^type (\w+) struct \{")
_TAGGED = re.compile(r"^\s*(?:(\w+)\s+)?(\S+)\s+`([^`]*)`")


@dataclass(frozen=True)
class ProtoField:
    number: int
    name: str
    type: str
    label: str  # one, many, map


@dataclass(frozen=True)
class GoField:
    json: str
    inline: bool
    keep: bool


def read(root: Path, relative: str) -> str:
    """A file of a checkout, or of a bare repository at HEAD."""
    path = root / relative
    if path.exists():
        return path.read_text()
    return subprocess.run(["git", "--git-dir", str(root), "show", f"HEAD:{relative}"], check=True,
                          capture_output=True, text=True).stdout


def revision(root: Path) -> str:
    """The commit a checkout (or bare repository) is at, for the generated file's header."""
    git_dir = ["--git-dir", str(root)] if not (root / ".git").exists() else ["-C", str(root)]
    result = subprocess.run(["git", *git_dir, "rev-parse", "--short=12", "HEAD"], check=False,
                            capture_output=True, text=True)
    return result.stdout.strip() or "(unknown commit)"


def parse_proto(text: str) -> tuple[str, dict[str, list[ProtoField]]]:
    package = re.search(r"^package ([\w.]+);", text, re.M)
    assert package, "generated.proto without a package"
    messages: dict[str, list[ProtoField]] = {}
    current: list[ProtoField] | None = None
    depth = 0
    for line in text.splitlines():
        stripped = line.split("//", 1)[0]
        if depth == 0 and (match := _MESSAGE.match(stripped)):
            current = messages.setdefault(match.group(1), [])
        elif depth == 1 and current is not None and (field := _FIELD.match(stripped)):
            label = "map" if field.group(3) else ("many" if field.group(1) == "repeated" else "one")
            proto_type = (field.group(3) or field.group(2)).lstrip(".")  # newer files write .k8s.io.…
            current.append(ProtoField(int(field.group(5)), field.group(4), proto_type, label))
        depth += stripped.count("{") - stripped.count("}")
    return package.group(1), messages


def parse_go(text: str) -> dict[str, dict[str, GoField]]:
    """Per struct, per protobuf field name: what the Go struct tags say."""
    structs: dict[str, dict[str, GoField]] = {}
    current: dict[str, GoField] | None = None
    for line in text.splitlines():
        if match := _STRUCT.match(line):
            current = structs.setdefault(match.group(1), {})
            continue
        if line.startswith("}"):
            current = None
            continue
        if current is None or not (tagged := _TAGGED.match(line)):
            continue
        field_name, go_type, tags = tagged.groups()
        protobuf = re.search(r'protobuf:"([^"]*)"', tags)
        json_tag = re.search(r'json:"([^"]*)"', tags)
        if not protobuf or not json_tag:
            continue
        proto_name = next((part[5:] for part in protobuf.group(1).split(",") if part.startswith("name=")), "")
        if not proto_name:  # a few tags leave the name out: go-to-protobuf then lower-cases the first letter
            go_name = field_name or go_type.lstrip("*").rsplit(".", 1)[-1]
            proto_name = go_name[:1].lower() + go_name[1:]
        json_name, *options = json_tag.group(1).split(",")
        embedded = field_name is None
        inline = embedded and not json_name
        keep = go_type.startswith("*") or "omitempty" not in options
        current[proto_name] = GoField(json_name, inline, keep)
    return structs


def kind_of(proto_type: str, package: str, known: dict[str, str]) -> str:
    """``string``/``int32``/… for scalars, ``time``/``intstr``/``quantity``, else the message's short name."""
    if proto_type in SCALARS:
        return proto_type
    qualified = proto_type if "." in proto_type else f"{package}.{proto_type}"
    if qualified in SPECIAL:
        return SPECIAL[qualified]
    if qualified not in known:
        raise SystemExit(f"unknown protobuf type {qualified}: add its package to PACKAGES or SPECIAL")
    return known[qualified]


def generate(api: Path, apimachinery: Path) -> str:
    roots = {"api": api, "apimachinery": apimachinery}
    protos: dict[str, tuple[str, list[ProtoField]]] = {}  # qualified name → (package, fields)
    go: dict[str, dict[str, GoField]] = {}  # qualified name → tags
    for repository, directory in PACKAGES:
        package, messages = parse_proto(read(roots[repository], f"{directory}/generated.proto"))
        structs = parse_go(read(roots[repository], f"{directory}/types.go"))
        for name, fields in messages.items():
            protos[f"{package}.{name}"] = (package, fields)
            go[f"{package}.{name}"] = structs.get(name, {})
    short: dict[str, str] = {}
    for qualified in protos:
        name = qualified.rsplit(".", 1)[1]
        short[qualified] = name
    by_short: dict[str, str] = {}
    wanted = [next(q for q in protos if q.endswith(f".{kind}") and _version_of(q) == api_version)
              for api_version, kind in sorted(ROOTS)]
    tables: dict[str, list[tuple[int, str, str, str, bool]]] = {}
    while wanted:
        qualified = wanted.pop()
        name = short[qualified]
        if name in tables:
            if by_short[name] != qualified:
                raise SystemExit(f"two messages called {name}: {by_short[name]} and {qualified}")
            continue
        by_short[name] = qualified
        package, fields = protos[qualified]
        tags = go[qualified]
        rows = []
        for field in fields:
            if (name, field.name) in SKIPPED:
                continue
            tag = tags.get(field.name)
            if tag is None:
                raise SystemExit(f"{name}.{field.name}: no Go struct tag names it")
            kind = kind_of(field.type, package, short)
            if kind not in SCALARS | set(SPECIAL.values()):
                target = field.type if "." in field.type else f"{package}.{field.type}"
                wanted.append(target)
            label = "inline" if tag.inline else field.label
            # Only a plain value can be an explicit zero; a message is always shown when it is on the wire.
            plain = label == "one" and kind in SCALARS | {"intstr", "quantity"}
            rows.append((field.number, tag.json, kind, label, tag.keep and plain))
        tables[name] = rows
    return _render(tables, {name: revision(root) for name, root in roots.items()})


def _version_of(qualified: str) -> str:
    # k8s.io.api.core.v1.Namespace → v1; k8s.io.api.apps.v1.Deployment → apps/v1; rbac → rbac.authorization.k8s.io/v1
    parts = qualified.split(".")
    group, version = parts[-3], parts[-2]
    if group == "core":
        return version
    groups = {"rbac": "rbac.authorization.k8s.io", "authentication": "authentication.k8s.io",
              "authorization": "authorization.k8s.io"}
    return f"{groups.get(group, group)}/{version}"


def _render(tables: dict[str, list[tuple[int, str, str, str, bool]]], sources: dict[str, str]) -> str:
    lines = [
        '"""Field tables of the Kubernetes protobuf messages kubectl sends, generated from upstream definitions.',
        "",
        "Generated by ``tools/generate_protobuf_tables.py`` from ``generated.proto`` and ``types.go`` of",
        "``k8s.io/api`` and ``k8s.io/apimachinery``; do not edit by hand, run the script again.",
        "",
        f"Sources: kubernetes/api {sources['api']}, kubernetes/apimachinery {sources['apimachinery']}.",
        "",
        "Per message, field number → ``(json name, kind, label, keep)``: ``kind`` is a scalar (``string``,",
        "``bytes``, ``bool``, ``int32``, ``int64``), ``time``/``intstr``/``quantity``, or another message of this",
        "table; ``label`` is ``one``, ``many``, ``map`` or ``inline`` (an embedded struct whose JSON keys join its",
        "parent's); ``keep`` marks a plain field whose zero value JSON shows (a pointer, or no ``omitempty``).",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "MESSAGES: dict[str, dict[int, tuple[str, str, str, bool]]] = {",
    ]
    for name in sorted(tables):
        lines.append(f"    {name!r}: {{".replace("'", '"'))
        for number, json_name, kind, label, keep in sorted(tables[name]):
            lines.append(f'        {number}: ("{json_name}", "{kind}", "{label}", {keep}),')
        lines.append("    },")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", type=Path, required=True, help="a checkout of github.com/kubernetes/api")
    parser.add_argument("--apimachinery", type=Path, required=True,
                        help="a checkout of github.com/kubernetes/apimachinery")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    options = parser.parse_args(argv)
    options.output.write_text(generate(options.api, options.apimachinery))
    print(f"wrote {options.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
