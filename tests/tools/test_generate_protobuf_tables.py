"""The protobuf table generator reads field numbers from generated.proto and JSON facts from types.go."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[2] / "tools" / "generate_protobuf_tables.py"
spec = importlib.util.spec_from_file_location("generate_protobuf_tables", TOOL)
assert spec is not None and spec.loader is not None
generator = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = generator
spec.loader.exec_module(generator)

PROTO = """
syntax = "proto2";
package k8s.io.api.core.v1;

// A comment with braces { } must not confuse the parser.
message Probe {
  optional ProbeHandler handler = 1;
  optional int32 periodSeconds = 4;
  optional int64 grace = 7;
}

message ProbeHandler {
  optional .k8s.io.apimachinery.pkg.util.intstr.IntOrString port = 2;
  repeated string command = 3;
  map<string, string> headers = 5;
}
"""

TYPES = """
type Probe struct {
	// The action.
	ProbeHandler `json:",inline" protobuf:"bytes,1,opt,name=handler"`
	PeriodSeconds int32 `json:"periodSeconds,omitempty" protobuf:"varint,4,opt,name=periodSeconds"`
	Grace *int64 `json:"terminationGracePeriodSeconds,omitempty" protobuf:"varint,7,opt,name=grace"`
}

type ProbeHandler struct {
	Port intstr.IntOrString `json:"port" protobuf:"bytes,2,opt,name=port"`
	Command []string `json:"command,omitempty" protobuf:"bytes,3,rep,name=command"`
	Headers map[string]string `json:"headers,omitempty" protobuf:"bytes,5,rep,name=headers"`
}
"""


def test_proto_numbers_and_go_tags_become_one_table() -> None:
    package, messages = generator.parse_proto(PROTO)
    structs = generator.parse_go(TYPES)
    assert package == "k8s.io.api.core.v1"
    assert [(f.number, f.name, f.label) for f in messages["Probe"]] == [
        (1, "handler", "one"), (4, "periodSeconds", "one"), (7, "grace", "one")]
    assert messages["ProbeHandler"][0].type == "k8s.io.apimachinery.pkg.util.intstr.IntOrString"
    assert messages["ProbeHandler"][2].label == "map"
    # Embedded and inlined; a pointer keeps its zero; omitempty drops it; no omitempty keeps it.
    assert structs["Probe"]["handler"].inline
    assert structs["Probe"]["grace"] == generator.GoField("terminationGracePeriodSeconds", inline=False, keep=True)
    assert not structs["Probe"]["periodSeconds"].keep
    assert structs["ProbeHandler"]["port"] == generator.GoField("port", inline=False, keep=True)
