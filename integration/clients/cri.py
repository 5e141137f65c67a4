#!/usr/bin/env python3
"""A minimal CRI client (the kubelet's side of containerd's CRI plugin), for
strata's client tests: Debian has no crictl.

gRPC comes from python3-grpcio; the few CRI messages it sends are encoded by
hand below (protobuf wire format: field number and wire type, varints,
length-delimited fields), with the field numbers of the CRI v1 API
(k8s.io/cri-api, runtime.v1). Nothing is generated.

usage: cri.py SOCKET COMMAND ARGS...
  runp NAME CGROUP_PARENT LOG_DIR       -> pod sandbox id
  create POD POD_NAME NAME CGROUP_PARENT LOG_DIR IMAGE MEMORY SWAP CMD...
                                        -> container id
  start ID | stop ID | rm ID | stopp POD | rmp POD
  update ID MEMORY SWAP
  exec ID CMD...                        -> the command's stdout; exits with its code
MEMORY and SWAP are bytes (0: unset); SWAP is memory+swap, as in the CRI.
"""
import sys

import grpc

SERVICE = "/runtime.v1.RuntimeService/"
NODE = 2  # NamespaceMode.NODE: the pod uses the host's network namespace


def varint(n):
    n &= (1 << 64) - 1  # int64 fields: two's complement on 64 bits
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def vint(num, n):
    return varint(num << 3) + varint(n) if n else b""


def vbytes(num, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(num << 3 | 2) + varint(len(data)) + data


def decode(buf):
    """Field number -> list of values (ints for varints, bytes otherwise)."""
    fields, i = {}, 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, i = read_varint(buf, i)
        elif wire == 2:
            n, i = read_varint(buf, i)
            val, i = buf[i:i + n], i + n
        elif wire == 1:
            val, i = buf[i:i + 8], i + 8
        elif wire == 5:
            val, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        fields.setdefault(num, []).append(val)
    return fields


def read_varint(buf, i):
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def sandbox_config(name, cgroup_parent, log_dir):
    metadata = vbytes(1, name) + vbytes(2, name + "-uid") + vbytes(3, "strata-test")
    namespaces = vint(1, NODE)
    security = vbytes(1, namespaces)
    linux = vbytes(1, cgroup_parent) + vbytes(2, security)
    # No hostname: the pod shares the host's UTS namespace with its network
    # one, as the kubelet does for hostNetwork pods.
    return vbytes(1, metadata) + vbytes(3, log_dir) + vbytes(8, linux)


def resources(memory, swap):
    return vint(4, memory) + vint(10, swap)


def call(channel, method, request):
    stub = channel.unary_unary(SERVICE + method)
    return decode(stub(request, timeout=60))


def first(fields, num, default=b""):
    return fields.get(num, [default])[0]


def main(argv):
    sock, cmd, args = argv[1], argv[2], argv[3:]
    with grpc.insecure_channel("unix://" + sock) as ch:
        if cmd == "runp":
            name, cgp, logdir = args
            r = call(ch, "RunPodSandbox", vbytes(1, sandbox_config(name, cgp, logdir)))
            print(first(r, 1).decode())
        elif cmd == "create":
            pod, pod_name, name, cgp, logdir, image, memory, swap, *command = args
            linux = vbytes(1, resources(int(memory), int(swap)))
            config = (vbytes(1, vbytes(1, name)) + vbytes(2, vbytes(1, image))
                      + b"".join(vbytes(3, c) for c in command)
                      + vbytes(11, name + ".log") + vbytes(15, linux))
            req = vbytes(1, pod) + vbytes(2, config) + vbytes(3, sandbox_config(pod_name, cgp, logdir))
            r = call(ch, "CreateContainer", req)
            print(first(r, 1).decode())
        elif cmd == "start":
            call(ch, "StartContainer", vbytes(1, args[0]))
        elif cmd == "update":
            cid, memory, swap = args
            call(ch, "UpdateContainerResources", vbytes(1, cid) + vbytes(2, resources(int(memory), int(swap))))
        elif cmd == "exec":
            cid, *command = args
            r = call(ch, "ExecSync", vbytes(1, cid) + b"".join(vbytes(2, c) for c in command) + vint(3, 30))
            sys.stdout.write(first(r, 1).decode())
            sys.stderr.write(first(r, 2).decode())
            return first(r, 3, 0)
        elif cmd == "stop":
            call(ch, "StopContainer", vbytes(1, args[0]) + vint(2, 5))
        elif cmd == "rm":
            call(ch, "RemoveContainer", vbytes(1, args[0]))
        elif cmd == "stopp":
            call(ch, "StopPodSandbox", vbytes(1, args[0]))
        elif cmd == "rmp":
            call(ch, "RemovePodSandbox", vbytes(1, args[0]))
        else:
            raise SystemExit(f"cri.py: unknown command {cmd}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except grpc.RpcError as e:
        sys.exit(f"cri.py {' '.join(sys.argv[2:4])}: {e.code().name}: {e.details()}")
