"""Runs the embedded Milvus server in a network namespace of its own; `python -m rvs.core.store.milvus_sandbox`.

Milvus 2.3 binds every component (proxy, coordinators, nodes, metrics) to all interfaces and
cannot be told otherwise, so anyone on the network could read or drop the face index. This
launcher takes the one port rvs needs on the host's loopback first, then moves itself into a new
user + network namespace that has only a loopback interface, starts Milvus there, and relays
connections from the host port to Milvus's proxy. Nothing of Milvus is reachable from outside the
machine, and several embedded servers can run on one machine (each has its own etcd port space).

Protocol with the parent: it prints `ready` on stdout once Milvus answers; it stops Milvus and
exits when its stdin closes (the parent stopped or died) or on SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

log = logging.getLogger("rvs.milvus_sandbox")

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS = 0x8913, 0x8914
_IFF_UP = 0x1
MILVUS_PORT = 19530  # inside the namespace: always free


class SandboxError(RuntimeError):
    """The namespace could not be made (e.g. unprivileged user namespaces are disabled)."""


def enter_private_network() -> None:
    """Move this process into a new user + network namespace and bring its loopback up."""
    uid, gid = os.getuid(), os.getgid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise SandboxError(f"unshare(CLONE_NEWUSER|CLONE_NEWNET): {os.strerror(err)}")
    # Keep our own uid/gid inside, so files in the data directory stay ours.
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
    Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | _IFF_UP))


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):  # either side went away: both are shut below
        while data := src.recv(1 << 16):
            dst.sendall(data)
    for s in (src, dst):
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)


def _relay(client: socket.socket, port: int) -> None:
    try:
        upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError as exc:
        log.warning("cannot reach Milvus inside the sandbox: %s", exc)
        client.close()
        return
    upstream.settimeout(None)
    for s in (client, upstream):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def serve(listener: socket.socket, port: int) -> None:
    """Relay every connection to the host port to Milvus's port inside the namespace."""
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return  # closed at shutdown
        threading.Thread(target=_relay, args=(client, port), name="relay", daemon=True).start()


def stop_milvus(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """SIGTERM first; Milvus's own graceful stop can wait 30 s and more for its components, and
    what it acknowledged is in its write-ahead log (rocksmq) and etcd, so a kill after a short
    grace loses nothing (the milvus package's own stop() kills after one second)."""
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        log.info("Milvus did not stop in %.0fs; killing it", grace_s)
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("port", type=int, help="loopback port on the host that reaches Milvus")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)

    # Bound before unshare: this socket stays in the host's network namespace, on loopback only.
    listener = socket.create_server(("127.0.0.1", args.port), backlog=128)
    try:
        enter_private_network()
    except (SandboxError, OSError) as exc:
        print(f"error: {exc}", flush=True)
        sys.exit(3)

    from milvus import MilvusServer

    server = MilvusServer()
    server.set_base_dir(str(args.data_dir))
    server.listen_port = MILVUS_PORT
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    server.start()  # waits until Milvus answers its health check (inside the namespace)
    (args.data_dir / "milvus.pid").write_text(str(server.server_proc.pid))
    threading.Thread(target=serve, args=(listener, MILVUS_PORT), name="accept", daemon=True).start()
    print("ready", flush=True)

    def parent_gone() -> None:
        sys.stdin.read()
        stopping.set()

    threading.Thread(target=parent_gone, name="stdin", daemon=True).start()
    while not stopping.wait(0.5):
        if server.server_proc.poll() is not None:
            log.error("Milvus exited with status %s", server.server_proc.returncode)
            break
    listener.close()
    stop_milvus(server.server_proc)
    (args.data_dir / "milvus.pid").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
