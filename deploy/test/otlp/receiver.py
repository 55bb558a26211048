#!/usr/bin/env python3
"""A small OTLP trace receiver for the tests: gRPC TraceService/Export and HTTP POST /v1/traces
(protobuf), on two ports. Every span received is appended to a file as one JSON line:
{"service", "name", "trace_id", "span_id", "parent_span_id", "attributes"} (IDs in hex).

Usage: receiver.py GRPC_PORT HTTP_PORT SPANS_FILE [PORTS_FILE]
A port of 0 lets the system choose one; with PORTS_FILE, the receiver writes the two ports it
listens on there ("GRPC HTTP"), whole, once both are bound, so that a test never races another
process for a port it picked in advance.
SPANS_FILE "-" decodes the spans and keeps none (a sink for benchmarks); it prints how many it
received when stopped (SIGTERM).
Needs PyPI's opentelemetry-proto and grpcio (scripts/services.sh ensure_otlp_receiver).
"""

import json
import os
import signal
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

grpc_port, http_port, spans_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ports_file = sys.argv[4] if len(sys.argv) > 4 else None
lock = threading.Lock()


def value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


received = 0


def record(request):
    global received
    if spans_file == "-":
        with lock:
            received += sum(len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans)
        return
    lines = []
    for resource_spans in request.resource_spans:
        resource = {a.key: value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                lines.append(json.dumps({
                    "service": resource.get("service.name"),
                    "name": span.name,
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "attributes": {a.key: value(a.value) for a in span.attributes},
                }))
    with lock, open(spans_file, "a") as out:
        for line in lines:
            out.write(line + "\n")


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        record(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class Http(BaseHTTPRequestHandler):
    def do_POST(self):
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        record(request)
        body = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def stop(*_):
    if spans_file == "-":
        print(f"receiver: {received} spans received", file=sys.stderr, flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), server)
grpc_port = server.add_insecure_port(f"127.0.0.1:{grpc_port}")
if grpc_port == 0:
    sys.exit("receiver: cannot listen for gRPC")
server.start()
http = ThreadingHTTPServer(("127.0.0.1", http_port), Http)
if ports_file:
    # Written under another name and renamed: a reader sees the whole file or none.
    with open(ports_file + ".tmp", "w") as out:
        out.write(f"{grpc_port} {http.server_address[1]}\n")
    os.replace(ports_file + ".tmp", ports_file)
http.serve_forever()
