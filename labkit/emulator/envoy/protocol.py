"""The wire types of the mesh's own protocols: Envoy's (from ``xds-protos``) and Istio's two small ones.

Envoy's messages and gRPC stubs come generated from the ``xds-protos`` package. Istio's own messages — the
certificate service ``istio.v1.auth.IstioCertificateService`` and the DNS proxy's name table
``istio.networking.nds.v1.NameTable`` — are three small messages: their descriptors are built here in code,
field for field as Istio's ``.proto`` files declare them, so nothing upstream is vendored and no code
generator runs at build time.

Resources travel as ``Any``. The builders speak protobuf JSON (dicts with ``@type``); turning one into a
message needs every type it mentions registered in the descriptor pool, which only happens when that type's
generated module is imported. :func:`to_any` therefore walks a resource's ``@type`` values and imports the
modules of their packages first (:func:`ensure_types`), so a builder may use any Envoy extension without a
list to keep in step here.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import pkgutil
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, json_format, message_factory, struct_pb2

TYPE_PREFIX = "type.googleapis.com/"
CLUSTER = f"{TYPE_PREFIX}envoy.config.cluster.v3.Cluster"
ENDPOINT = f"{TYPE_PREFIX}envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = f"{TYPE_PREFIX}envoy.config.listener.v3.Listener"
ROUTE = f"{TYPE_PREFIX}envoy.config.route.v3.RouteConfiguration"
SECRET = f"{TYPE_PREFIX}envoy.extensions.transport_sockets.tls.v3.Secret"
NAME_TABLE = f"{TYPE_PREFIX}istio.networking.nds.v1.NameTable"
# istioctl proxy-status' short names for the types.
SHORT_NAMES = {CLUSTER: "CDS", LISTENER: "LDS", ENDPOINT: "EDS", ROUTE: "RDS", SECRET: "SDS", NAME_TABLE: "NDS"}

CREATE_CERTIFICATE = "/istio.v1.auth.IstioCertificateService/CreateCertificate"
ADS_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
SDS_METHOD = "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets"


def _istio_file(name: str, package: str, messages: list[descriptor_pb2.DescriptorProto],
                dependencies: tuple[str, ...] = ()) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name=name, package=package, syntax="proto3")
    proto.dependency.extend(dependencies)
    proto.message_type.extend(messages)
    return proto


def _field(name: str, number: int, kind: int, *, repeated: bool = False, type_name: str = "",
           ) -> descriptor_pb2.FieldDescriptorProto:
    label = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED if repeated else \
        descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    field = descriptor_pb2.FieldDescriptorProto(name=name, number=number, type=kind, label=label)  # type: ignore[arg-type]
    if type_name:
        field.type_name = type_name
    return field


_F = descriptor_pb2.FieldDescriptorProto


def _build() -> dict[str, Any]:
    pool = descriptor_pool.Default()
    struct_pb2.Struct  # noqa: B018  (imported for its descriptor: the request's metadata is a Struct)
    # istio.io/api security/v1alpha1/ca.proto
    request = descriptor_pb2.DescriptorProto(name="IstioCertificateRequest")
    request.field.extend([_field("csr", 1, _F.TYPE_STRING), _field("validity_duration", 3, _F.TYPE_INT64),
                          _field("metadata", 4, _F.TYPE_MESSAGE, type_name=".google.protobuf.Struct")])
    response = descriptor_pb2.DescriptorProto(name="IstioCertificateResponse")
    response.field.append(_field("cert_chain", 1, _F.TYPE_STRING, repeated=True))
    ca = _istio_file("labkit/istio/v1/auth/ca.proto", "istio.v1.auth", [request, response],
                     ("google/protobuf/struct.proto",))
    # istio.io/istio pkg/dns/proto/nds.proto
    info = descriptor_pb2.DescriptorProto(name="NameInfo")
    info.field.extend([_field("ips", 1, _F.TYPE_STRING, repeated=True), _field("registry", 2, _F.TYPE_STRING),
                       _field("shortname", 3, _F.TYPE_STRING), _field("namespace", 4, _F.TYPE_STRING),
                       _field("alt_hosts", 5, _F.TYPE_STRING, repeated=True)])
    entry = descriptor_pb2.DescriptorProto(name="TableEntry")
    entry.options.map_entry = True
    entry.field.extend([_field("key", 1, _F.TYPE_STRING),
                        _field("value", 2, _F.TYPE_MESSAGE,
                               type_name=".istio.networking.nds.v1.NameTable.NameInfo")])
    table = descriptor_pb2.DescriptorProto(name="NameTable")
    table.nested_type.extend([info, entry])
    table.field.append(_field("table", 1, _F.TYPE_MESSAGE, repeated=True,
                              type_name=".istio.networking.nds.v1.NameTable.TableEntry"))
    nds = _istio_file("labkit/istio/networking/nds/v1/nds.proto", "istio.networking.nds.v1", [table])
    classes: dict[str, Any] = {}
    for file_proto in (ca, nds):
        try:
            pool.FindFileByName(file_proto.name)
        except KeyError:
            pool.Add(file_proto)
    for full_name in ("istio.v1.auth.IstioCertificateRequest", "istio.v1.auth.IstioCertificateResponse",
                      "istio.networking.nds.v1.NameTable"):
        classes[full_name] = message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))
    return classes


_CLASSES = _build()
IstioCertificateRequest = _CLASSES["istio.v1.auth.IstioCertificateRequest"]
IstioCertificateResponse = _CLASSES["istio.v1.auth.IstioCertificateResponse"]
NameTable = _CLASSES["istio.networking.nds.v1.NameTable"]


def _type_urls(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == "@type" and isinstance(item, str):
                yield item
            else:
                yield from _type_urls(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _type_urls(item)


@cache
def _import_package(package: str) -> None:
    """Import every generated module of one proto package (``envoy.extensions.filters.http.router.v3``)."""
    try:
        module = importlib.import_module(package)
    except ImportError:
        return
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        if info.name.endswith("_pb2"):
            importlib.import_module(f"{package}.{info.name}")


def ensure_types(resource: Mapping[str, Any]) -> None:
    """Register every type a protobuf-JSON resource names, so it can be parsed."""
    for url in set(_type_urls(resource)):
        _import_package(url.removeprefix(TYPE_PREFIX).rpartition(".")[0])


def message_class(type_url: str) -> Any:
    """The generated class of a type URL (importing its package's modules)."""
    name = type_url.removeprefix(TYPE_PREFIX)
    if name in _CLASSES:
        return _CLASSES[name]
    _import_package(name.rpartition(".")[0])
    return message_factory.GetMessageClass(descriptor_pool.Default().FindMessageTypeByName(name))


def to_message(resource: Mapping[str, Any], type_url: str) -> Any:
    """A protobuf-JSON resource (``@type`` optional) as its message.

    Raises:
        google.protobuf.json_format.ParseError: the resource does not fit its type; the message names the field.
    """
    ensure_types(resource)
    message = message_class(type_url)()
    json_format.ParseDict({k: v for k, v in resource.items() if k != "@type"}, message)
    return message


def to_any(resource: Mapping[str, Any], type_url: str) -> any_pb2.Any:
    """A protobuf-JSON resource packed as ``Any`` of ``type_url``.

    istiod sends the same resources over and over (every push re-sends a proxy's whole state of the world, and
    endpoints and routes ride along with clusters and listeners), and protobuf's JSON parser is pure Python: the
    encoding is remembered by the resource's canonical JSON, which is an order of magnitude cheaper to make.

    Raises:
        google.protobuf.json_format.ParseError: the resource does not fit its type; the message names the field.
    """
    canonical = json.dumps(resource, sort_keys=True, separators=(",", ":"))
    key = (type_url, hashlib.blake2b(canonical.encode(), digest_size=16).digest())
    with _ENCODED_LOCK:  # gRPC's synchronous servers (SPIRE's Workload API) call from worker threads
        encoded = _ENCODED.get(key)
        if encoded is not None:
            _ENCODED.move_to_end(key)
    if encoded is None:
        message = to_message(resource, type_url)
        encoded = (TYPE_PREFIX + message.DESCRIPTOR.full_name, message.SerializeToString())
        with _ENCODED_LOCK:
            _ENCODED[key] = encoded
            if len(_ENCODED) > ENCODED_CACHE_SIZE:
                _ENCODED.popitem(last=False)
    return any_pb2.Any(type_url=encoded[0], value=encoded[1])


# Encoded resources by (type URL, digest of their canonical JSON), least recently used first.
ENCODED_CACHE_SIZE = 4096
_ENCODED: OrderedDict[tuple[str, bytes], tuple[str, bytes]] = OrderedDict()
_ENCODED_LOCK = threading.Lock()


def to_dict(message: Any) -> dict[str, Any]:
    """A message as protobuf JSON with the builders' field names (``snake_case``)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def struct(values: Mapping[str, Any]) -> struct_pb2.Struct:
    """A ``google.protobuf.Struct`` (node metadata, the CA request's metadata)."""
    result = struct_pb2.Struct()
    result.update(dict(values))
    return result
