"""Real stream servers for the live-stream tests: Debian's nginx with its RTMP module (started on a
free port with a config of its own, no systemd), fed by an ffmpeg that loops a clip in real time;
and a TCP server that accepts and then sends nothing (a stalled camera)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from xml.etree import ElementTree

from conftest import free_port

RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
SYSTEM_PYTHON = "/usr/bin/python3"  # the one with GStreamer's GObject bindings (python3-gi)

_CONF = """
load_module {module};
daemon off;
master_process off;
worker_processes 1;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 64; }}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        application live {{
            live on;
            record off;
            hls on;
            hls_path {dir}/hls;
            hls_fragment 1s;
            hls_playlist_length 6s;
        }}
    }}
}}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{http_port};
        location /stat {{
            rtmp_stat all;
        }}
        location /hls {{
            types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
            root {dir};
            add_header Cache-Control no-cache;
        }}
    }}
}}
"""


def available() -> str:
    """Why the stream tests cannot run here ("" when they can)."""
    missing = [what for what in ("nginx", "ffmpeg") if shutil.which(what) is None]
    if not RTMP_MODULE.exists():
        missing.append(str(RTMP_MODULE))
    return f"needs {', '.join(missing)} (apt-get install nginx-light libnginx-mod-rtmp ffmpeg)" if missing else ""


class RtmpServer:
    """nginx-rtmp on 127.0.0.1:port, its streams also as HLS on http_port; `publish` starts an ffmpeg
    that loops a clip into live/<name>."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.http_port = free_port()
        self._nginx: subprocess.Popen[bytes] | None = None
        self._publishers: dict[str, subprocess.Popen[bytes]] = {}

    def url(self, name: str) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{name}"

    def hls_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.http_port}/hls/{name}.m3u8"

    def start(self) -> None:
        (self.folder / "logs").mkdir(parents=True, exist_ok=True)
        conf = self.folder / "nginx.conf"
        conf.write_text(_CONF.format(module=RTMP_MODULE, dir=self.folder, port=self.port, http_port=self.http_port))
        self._nginx = subprocess.Popen(
            ["nginx", "-c", str(conf), "-p", str(self.folder), "-e", str(self.folder / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"nginx-rtmp did not listen on {self.port}: {(self.folder / 'error.log').read_text()}")

    def publish(self, name: str, clip: Path, copy: bool = False) -> float:
        """Loop `clip` into the stream in real time: encoded as a camera would (H.264, a keyframe a
        second, no audio), or `copy`: its own H.264 packets as they are (no encoding CPU). Returns once
        the stream is live, with the wall-clock time (ms) its publisher began: the clip's time 0."""
        codec = (
            ["-c:v", "copy"] if copy else ["-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "25"]
        )
        self._publishers[name] = subprocess.Popen(
            [
                *("ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip)),
                *codec,
                *("-an", "-f", "flv", self.url(name)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self._live_since(name)

    def _live_since(self, name: str, timeout_s: float = 30) -> float:
        """When the stream's publisher connected, from nginx-rtmp's own count of its milliseconds
        (what ffmpeg takes to start, which load stretches to seconds, is not counted)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._publishers[name].poll() is not None:
                raise RuntimeError(f"ffmpeg stopped publishing {name} (exit {self._publishers[name].returncode})")
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/stat", timeout=5) as reply:
                stat = ElementTree.fromstring(reply.read())
            for stream in stat.iter("stream"):
                for client in stream.iter("client") if stream.findtext("name") == name else ():
                    if client.find("publishing") is not None:
                        return time.time() * 1000 - int(client.findtext("time", "0"))
            time.sleep(0.05)
        raise RuntimeError(f"{name} was not live on nginx-rtmp after {timeout_s:g} s")

    def cut(self, name: str) -> None:
        """The publisher goes away (a camera's link drops)."""
        publisher = self._publishers.pop(name)
        publisher.kill()
        publisher.wait(10)

    def stop(self) -> None:
        for name in list(self._publishers):
            self.cut(name)
        if self._nginx is not None:
            self._nginx.terminate()
            try:
                self._nginx.wait(10)
            except subprocess.TimeoutExpired:
                self._nginx.kill()
                self._nginx.wait(10)


@contextmanager
def rtmp_server(folder: Path) -> Iterator[RtmpServer]:
    """Fails, rather than skips, where the servers are missing: .ci/run installs them."""
    if why := available():
        raise RuntimeError(why)
    server = RtmpServer(folder)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def rtsp_available() -> str:
    """Why the RTSP tests cannot run here ("" when they can)."""
    check = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    try:
        subprocess.run([SYSTEM_PYTHON, "-c", check], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "needs GStreamer's RTSP server (apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good)"
    return ""


@contextmanager
def rtsp_server(clip: Path, user: str, password: str) -> Iterator[int]:
    """GStreamer's RTSP server serving `clip` (H.264 MP4) at rtsp://127.0.0.1:PORT/cam behind basic
    auth, from its start for each client, in real time: its port."""
    if why := rtsp_available():
        raise RuntimeError(why)
    port = free_port()
    script = Path(__file__).with_name("rtsp_server.py")
    server = subprocess.Popen(
        [SYSTEM_PYTHON, str(script), str(port), str(clip), user, password],
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        yield port
    finally:
        server.kill()
        server.wait(10)


@contextmanager
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never sends a byte: its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()
