"""A real Milvus server (the `milvus` package's standalone binary) run as rvs's child process."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from pathlib import Path

log = logging.getLogger(__name__)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


class EmbeddedMilvus:
    """Starts Milvus with its data in `data_dir`; `uri` is where pymilvus reaches it."""

    def __init__(self, data_dir: Path, port: int = 19530) -> None:
        self.data_dir = data_dir
        self.port = port
        self._server = None
        self._pid_file = data_dir / "milvus.pid"

    @property
    def pid(self) -> int | None:
        return self._server.server_proc.pid if self._server is not None else None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _reap_stale(self) -> None:
        """A previous rvs that was killed leaves its Milvus running on our data; stop it first."""
        try:
            pid = int(self._pid_file.read_text())
        except (OSError, ValueError):
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return
        if b"milvus" in cmdline:
            log.warning("stopping a stale embedded Milvus (pid %d) left by an earlier run", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not Path(f"/proc/{pid}").exists():
                    break
                import time

                time.sleep(0.1)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def start(self) -> None:
        from milvus import MilvusServer

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._reap_stale()
        if not _port_free(self.port):
            raise RuntimeError(
                f"port {self.port} is taken: another Milvus is running there. Set RVS_MILVUS_URI to use it, "
                f"or RVS_MILVUS_PORT to start the embedded one elsewhere"
            )
        server = MilvusServer()
        server.set_base_dir(str(self.data_dir))
        server.listen_port = self.port
        log.info("starting embedded Milvus in %s on port %d", self.data_dir, self.port)
        server.start()
        self._server = server
        self._pid_file.write_text(str(server.server_proc.pid))

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
            self._pid_file.unlink(missing_ok=True)
