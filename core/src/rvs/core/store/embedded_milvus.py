"""A real Milvus server (the `milvus` package's standalone binary) run as rvs's child process.

By default it runs sandboxed (rvs.core.store.milvus_sandbox): in a network namespace of its own, reached
only through one loopback port on the host, because Milvus itself listens on every interface.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from rvs.core.config import StoreSettings

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 240.0  # first start unpacks the binary and initialises etcd; slow on 2 cores


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


class EmbeddedMilvus:
    """Starts Milvus with its data in `data_dir`; `uri` is where pymilvus reaches it.

    `isolate=False` runs it as the `milvus` package does, every port open on every interface:
    only for hosts without user namespaces, and only behind a firewall."""

    def __init__(self, data_dir: Path, port: int = 19530, isolate: bool = True) -> None:
        self.data_dir = data_dir
        self.port = port
        self.isolate = isolate
        self._sandbox: subprocess.Popen[str] | None = None
        self._server = None  # the milvus package's MilvusServer, when not isolated
        self._pid_file = data_dir / "milvus.pid"

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The Milvus server process (not the sandbox launcher)."""
        try:
            return int(self._pid_file.read_text())
        except (OSError, ValueError):
            return None

    def _reap_stale(self) -> None:
        """A previous rvs that was killed leaves its Milvus running on our data; stop it first."""
        pid = self.pid
        if pid is None:
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return
        if b"milvus" in cmdline:
            log.warning("stopping a stale embedded Milvus (pid %d) left by an earlier run", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            for _ in range(300):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._reap_stale()
        if not _port_free(self.port):
            raise RuntimeError(
                f"port {self.port} is taken: another Milvus is running there. Set RVS_MILVUS_URI to use it, "
                f"or RVS_MILVUS_PORT to start the embedded one elsewhere"
            )
        log.info("starting embedded Milvus in %s on 127.0.0.1:%d", self.data_dir, self.port)
        if self.isolate:
            self._start_sandboxed()
        else:
            log.warning(
                "embedded Milvus runs without its network sandbox (RVS_MILVUS_ISOLATE=false): its ports, "
                "19530 and 9091 among them, are open on every interface without authentication"
            )
            self._start_exposed()

    def _start_sandboxed(self) -> None:
        stderr = (self.data_dir / "sandbox.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "rvs.core.store.milvus_sandbox", str(self.data_dir), str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        stderr.close()
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline() if proc.stdout else ""))
        reader.start()
        reader.join(_START_TIMEOUT_S)
        said = lines[0].strip() if lines else ""
        if said != "ready":
            proc.kill()
            proc.wait()
            raise RuntimeError(self._start_failure(said))
        self._sandbox = proc

    def _start_failure(self, said: str) -> str:
        if said.startswith("error: unshare"):
            return (
                f"cannot start the embedded Milvus in a network namespace of its own ({said[7:]}): without it "
                f"Milvus listens on every interface. Allow unprivileged user namespaces "
                f"(sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces), or run a Milvus server "
                f"and set RVS_MILVUS_URI, or accept the exposure behind a firewall with RVS_MILVUS_ISOLATE=false"
            )
        log_tail = (self.data_dir / "sandbox.log").read_text(errors="replace")[-2000:]
        return f"the embedded Milvus did not start ({said or 'no answer'}); see {self.data_dir}/logs. {log_tail}"

    def _start_exposed(self) -> None:
        from milvus import MilvusServer

        server = MilvusServer()
        server.set_base_dir(str(self.data_dir))
        server.listen_port = self.port
        server.start()
        self._server = server
        self._pid_file.write_text(str(server.server_proc.pid))

    def stop(self) -> None:
        if self._sandbox is not None:
            proc, self._sandbox = self._sandbox, None
            if proc.stdin:
                proc.stdin.close()  # the launcher stops Milvus and exits
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._server is not None:
            self._server.stop()
            self._server = None
            self._pid_file.unlink(missing_ok=True)


def embedded_milvus(settings: StoreSettings) -> EmbeddedMilvus | None:
    """The embedded server the settings ask for: None when they name a Milvus server (RVS_MILVUS_URI)."""
    if settings.milvus_uri:
        return None
    return EmbeddedMilvus(settings.data_dir / "milvus", settings.milvus_port, settings.milvus_isolate)
