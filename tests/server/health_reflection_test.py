#!/usr/bin/env python3
"""gRPC health checking and server reflection of tinyfed-server, seen by an
independent client: Debian's python3-grpcio, with the request and response
messages of grpc.health.v1 and grpc.reflection.v1alpha declared here field
by field from their published .proto files (Debian ships neither the
grpcio-health-checking nor the grpcio-reflection module, nor the .proto
files). Starts the real binary on a fresh store and checks that:
  - Health.Check answers SERVING for the server ("") and for
    tinyfed.v1.Coordinator, and NOT_FOUND for a service it does not have;
  - reflection lists the Coordinator, Health and ServerReflection services,
    and serves the Coordinator's descriptor with its three methods;
  - a Health.Watch stream sees NOT_SERVING when SIGTERM starts the drain,
    and the server then exits 0.

  health_reflection_test.py PATH_TO_TINYFED_SERVER
"""
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading

import grpc
from google.protobuf import descriptor_pb2, message_factory

F = descriptor_pb2.FieldDescriptorProto


def field(message, name, number, kind, type_name=None, repeated=False, oneof=None):
    f = message.field.add(name=name, number=number, type=kind,
                          label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
    if type_name:
        f.type_name = type_name
    if oneof is not None:
        f.oneof_index = oneof


def health_file():
    fd = descriptor_pb2.FileDescriptorProto(name="grpc/health/v1/health.proto",
                                            package="grpc.health.v1", syntax="proto3")
    request = fd.message_type.add(name="HealthCheckRequest")
    field(request, "service", 1, F.TYPE_STRING)
    response = fd.message_type.add(name="HealthCheckResponse")
    status = response.enum_type.add(name="ServingStatus")
    for name, number in (("UNKNOWN", 0), ("SERVING", 1), ("NOT_SERVING", 2),
                         ("SERVICE_UNKNOWN", 3)):
        status.value.add(name=name, number=number)
    field(response, "status", 1, F.TYPE_ENUM,
          ".grpc.health.v1.HealthCheckResponse.ServingStatus")
    return fd


def reflection_file():
    p = ".grpc.reflection.v1alpha."
    fd = descriptor_pb2.FileDescriptorProto(name="reflection/v1alpha/reflection.proto",
                                            package="grpc.reflection.v1alpha",
                                            syntax="proto3")
    request = fd.message_type.add(name="ServerReflectionRequest")
    request.oneof_decl.add(name="message_request")
    field(request, "host", 1, F.TYPE_STRING)
    field(request, "file_by_filename", 3, F.TYPE_STRING, oneof=0)
    field(request, "file_containing_symbol", 4, F.TYPE_STRING, oneof=0)
    field(request, "list_services", 7, F.TYPE_STRING, oneof=0)
    response = fd.message_type.add(name="ServerReflectionResponse")
    response.oneof_decl.add(name="message_response")
    field(response, "valid_host", 1, F.TYPE_STRING)
    field(response, "original_request", 2, F.TYPE_MESSAGE, p + "ServerReflectionRequest")
    field(response, "file_descriptor_response", 4, F.TYPE_MESSAGE,
          p + "FileDescriptorResponse", oneof=0)
    field(response, "list_services_response", 6, F.TYPE_MESSAGE,
          p + "ListServiceResponse", oneof=0)
    field(response, "error_response", 7, F.TYPE_MESSAGE, p + "ErrorResponse", oneof=0)
    files = fd.message_type.add(name="FileDescriptorResponse")
    field(files, "file_descriptor_proto", 1, F.TYPE_BYTES, repeated=True)
    services = fd.message_type.add(name="ListServiceResponse")
    field(services, "service", 1, F.TYPE_MESSAGE, p + "ServiceResponse", repeated=True)
    service = fd.message_type.add(name="ServiceResponse")
    field(service, "name", 1, F.TYPE_STRING)
    error = fd.message_type.add(name="ErrorResponse")
    field(error, "error_code", 1, F.TYPE_INT32)
    field(error, "error_message", 2, F.TYPE_STRING)
    return fd


MESSAGES = message_factory.GetMessages([health_file(), reflection_file()])
HealthCheckRequest = MESSAGES["grpc.health.v1.HealthCheckRequest"]
HealthCheckResponse = MESSAGES["grpc.health.v1.HealthCheckResponse"]
ReflectionRequest = MESSAGES["grpc.reflection.v1alpha.ServerReflectionRequest"]
ReflectionResponse = MESSAGES["grpc.reflection.v1alpha.ServerReflectionResponse"]
SERVING = 1
NOT_SERVING = 2

failures = []


def check(condition, what):
    print(("ok: " if condition else "FAIL: ") + what, flush=True)
    if not condition:
        failures.append(what)


class Server:
    """The binary on a fresh store and a port the system picks; its output
    lines arrive on a queue."""

    def __init__(self, binary, directory):
        self.process = subprocess.Popen(
            [binary, "--listen=127.0.0.1:0", "--db=" + os.path.join(directory, "s.db")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            sys.stdout.write("server: " + line)
            self.lines.put(line)

    def wait_for(self, pattern, timeout_s=20):
        while True:
            line = self.lines.get(timeout=timeout_s)
            match = re.search(pattern, line)
            if match:
                return match


def unary(channel, method, request_type, response_type):
    return channel.unary_unary(method, request_serializer=request_type.SerializeToString,
                               response_deserializer=response_type.FromString)


def main():
    binary = sys.argv[1]
    with tempfile.TemporaryDirectory() as directory:
        server = Server(binary, directory)
        try:
            port = server.wait_for(r"listening on \S+ \(port (\d+),").group(1)
            channel = grpc.insecure_channel("127.0.0.1:" + port)
            health = unary(channel, "/grpc.health.v1.Health/Check", HealthCheckRequest,
                           HealthCheckResponse)
            for service in ("", "tinyfed.v1.Coordinator"):
                status = health(HealthCheckRequest(service=service), timeout=10).status
                check(status == SERVING, "Check(%r) is SERVING (got %d)" % (service, status))
            try:
                health(HealthCheckRequest(service="tinyfed.v1.NoSuchService"), timeout=10)
                check(False, "Check of an unknown service fails")
            except grpc.RpcError as error:
                check(error.code() == grpc.StatusCode.NOT_FOUND,
                      "Check of an unknown service is NOT_FOUND (got %s)" % error.code())

            reflect = channel.stream_stream(
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                request_serializer=ReflectionRequest.SerializeToString,
                response_deserializer=ReflectionResponse.FromString)
            replies = list(reflect(iter([
                ReflectionRequest(list_services=""),
                ReflectionRequest(file_containing_symbol="tinyfed.v1.Coordinator"),
            ]), timeout=10))
            check(len(replies) == 2, "two reflection replies (got %d)" % len(replies))
            names = {s.name for s in replies[0].list_services_response.service}
            print("services by reflection:", sorted(names))
            for name in ("tinyfed.v1.Coordinator", "grpc.health.v1.Health",
                         "grpc.reflection.v1alpha.ServerReflection"):
                check(name in names, "reflection lists " + name)
            methods = set()
            for raw in replies[1].file_descriptor_response.file_descriptor_proto:
                file = descriptor_pb2.FileDescriptorProto.FromString(raw)
                for service in file.service:
                    if file.package + "." + service.name == "tinyfed.v1.Coordinator":
                        methods |= {m.name for m in service.method}
            check(methods == {"CheckIn", "SubmitUpdate", "GetModel"},
                  "reflection describes the Coordinator's methods (got %s)" % sorted(methods))

            # The drain: a watcher sees NOT_SERVING once SIGTERM arrives.
            watch = channel.unary_stream("/grpc.health.v1.Health/Watch",
                                         request_serializer=HealthCheckRequest.SerializeToString,
                                         response_deserializer=HealthCheckResponse.FromString)
            updates = watch(HealthCheckRequest(service=""), timeout=20)
            first = next(updates).status
            check(first == SERVING, "Watch starts at SERVING (got %d)" % first)
            server.process.send_signal(signal.SIGTERM)
            seen = []
            try:
                for update in updates:
                    seen.append(update.status)
            except grpc.RpcError as error:
                print("watch ended:", error.code())
            check(NOT_SERVING in seen, "Watch sees NOT_SERVING at shutdown (saw %s)" % seen)
            code = server.process.wait(timeout=20)
            check(code == 0, "the server exits 0 after SIGTERM (got %s)" % code)
        finally:
            if server.process.poll() is None:
                server.process.kill()
                server.process.wait()
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
