"""A real S3-compatible server on loopback for the bucket tests: versitygw (Apache-2.0, built with
`go install` by .ci/run) serving a local folder, optionally posting bucket events to a webhook."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from conftest import free_port

ACCESS_KEY = "rvs-test"
SECRET_KEY = "rvs-test-secret-key"


def versitygw_binary() -> str:
    found = os.environ.get("RVS_VERSITYGW") or shutil.which("versitygw")
    if not found and (Path.home() / "go" / "bin" / "versitygw").exists():
        found = str(Path.home() / "go" / "bin" / "versitygw")
    if not found:
        pytest.fail(
            "versitygw is not installed: `go install github.com/versity/versitygw/cmd/versitygw@v1.8.0` "
            "(.ci/run does this), or set RVS_VERSITYGW",
            pytrace=False,
        )
    return found


class S3Server:
    def __init__(self, root: Path, webhook_url: str = "") -> None:
        self.root = root
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.webhook_url = webhook_url
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        args = [versitygw_binary(), "--access", ACCESS_KEY, "--secret", SECRET_KEY, "--port", f"127.0.0.1:{self.port}"]
        if self.webhook_url:
            args += ["--event-webhook-url", self.webhook_url]
        args += ["posix", "--sidecar", str(self.root / "meta"), str(self.root / "data")]
        (self.root / "meta").mkdir(exist_ok=True)
        with open(self.root / f"server-{self.port}.log", "ab") as log:
            self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.client().list_buckets()
                return
            except Exception:
                if self._proc.poll() is not None:
                    raise RuntimeError(
                        f"versitygw exited: {(self.root / f'server-{self.port}.log').read_text()[-2000:]}"
                    ) from None
                time.sleep(0.1)
        raise RuntimeError("versitygw did not start")

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(10)

    def client(self, secret: str = SECRET_KEY):  # type: ignore[no-untyped-def]
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=secret,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def settings(self) -> dict[str, object]:
        """SamplerSettings fields that point rvs at this server."""
        return {"s3_endpoint_url": self.endpoint, "s3_access_key_id": ACCESS_KEY, "s3_secret_access_key": SECRET_KEY}
