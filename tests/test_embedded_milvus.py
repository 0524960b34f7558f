"""The embedded Milvus server is reachable from this machine only, through one loopback port."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import pytest

from rvs.core.store.embedded_milvus import EmbeddedMilvus
from rvs.core.store.faces import FaceStore

from conftest import free_port

_LISTEN = "0A"


def listening(net_dir: Path) -> list[tuple[str, int, str]]:
    """(address, port, socket inode) of every listening TCP socket in the network namespace
    whose /proc/<pid>/net is `net_dir`."""
    found = []
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in (net_dir / name).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != _LISTEN:
                continue
            hex_addr, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_addr)
            # /proc prints the address as 32-bit words in host byte order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.append((socket.inet_ntop(family, raw), int(hex_port, 16), fields[9]))
    return found


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed meanwhile
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_no_milvus_port_is_open_beyond_loopback(milvus_server: EmbeddedMilvus) -> None:
    milvus = milvus_server.pid
    assert milvus is not None
    # Here, in the host's namespace, the only socket of Milvus and of its launcher is rvs's port on loopback.
    ours = socket_inodes(milvus) | socket_inodes(parent(milvus))
    exposed = [(addr, port) for addr, port, inode in listening(Path("/proc/self/net")) if inode in ours]
    assert exposed == [("127.0.0.1", milvus_server.port)]
    # Milvus itself listens on every interface (proxy, coordinators, nodes, etcd, metrics), but in a
    # network namespace of its own, whose only interface is loopback.
    assert os.readlink(f"/proc/{milvus}/ns/net") != os.readlink("/proc/self/ns/net")
    interfaces = [line.split(":")[0].strip() for line in Path(f"/proc/{milvus}/net/dev").read_text().splitlines()[2:]]
    assert interfaces == ["lo"]
    inside = listening(Path(f"/proc/{milvus}/net"))
    assert {19530, 9091} <= {port for _, port, _ in inside}, inside


def test_two_embedded_servers_run_side_by_side(tmp_path: Path, milvus_uri: str) -> None:
    """Each sandbox has its own ports, etcd's included: a second server starts beside the session's."""
    second = EmbeddedMilvus(tmp_path / "milvus", free_port())
    second.start()
    try:
        for uri in (milvus_uri, second.uri):
            store = FaceStore(uri, "side_by_side", "test-model", 4, consistency="Strong")
            store.open()
            assert store.count() == 0
            store.drop()
            store.close()
    finally:
        second.stop()
    assert second.pid is None or not Path(f"/proc/{second.pid}").exists()


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        server = EmbeddedMilvus(tmp_path / "milvus", taken.getsockname()[1])
        with pytest.raises(RuntimeError, match="is taken"):
            server.start()
