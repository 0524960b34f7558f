"""Every new alert POSTed to a webhook as the Alert's protobuf JSON (the still in base64), signed with
the shared secret: `X-Rvs-Signature: sha256=<hex HMAC-SHA256(secret, body)>`, and `X-Rvs-Alert-Id`.

Alerts go in the order folded, each until the receiver takes it (2xx), retried with back-off while it
is away or failing (5xx, 429, no connection); one it refuses (another 4xx) is logged and skipped. The
seq delivered is kept in the catalog, so a restart goes on where it stopped: an alert is posted again
only if rvs stopped between the POST and recording it (the receiver can tell by X-Rvs-Alert-Id).
The first start with a webhook begins at the alerts folded from then on.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import urllib.error
import urllib.request

from google.protobuf import json_format
from prometheus_client import CollectorRegistry, Counter

from rvs.core.catalog import Catalog
from rvs.core.retry import Backoff, Stopped
from rvs.v1 import rvs_pb2 as pb

log = logging.getLogger(__name__)

CURSOR = "webhook"
_PAGE = 100


class DeliveryFailed(Exception):
    """The receiver is away or failed (retried)."""


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class AlertWebhook:
    def __init__(
        self,
        url: str,
        secret: bytes,
        catalog: Catalog,
        registry: CollectorRegistry,
        poll_s: float = 0.5,
        timeout_s: float = 10.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.url = url
        self.secret = secret
        self.catalog = catalog
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.backoff = backoff or Backoff(first_s=0.5, max_s=60.0)
        self.deliveries = Counter(
            "rvs_alert_webhook_deliveries",
            "Alert webhook POSTs by outcome: delivered, failed (retried), refused (a 4xx: skipped).",
            ["outcome"],
            registry=registry,
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.catalog.alert_cursor(CURSOR) is None:
            self.catalog.set_alert_cursor(CURSOR, self.catalog.last_alert_seq())
        self._thread = threading.Thread(target=self._loop, name="alert-webhook", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.deliver_pending():
                    self._stop.wait(self.poll_s)
            except Stopped:
                return
            except Exception:  # a bug: logged, and the next pass tries again
                log.exception("alert webhook: a delivery pass failed")
                self._stop.wait(self.poll_s)

    def deliver_pending(self) -> int:
        """POST the alerts folded since the last one delivered; how many were."""
        cursor = self.catalog.alert_cursor(CURSOR) or 0
        page = self.catalog.alerts(after_seq=cursor, limit=_PAGE)
        for seq, alert in page:
            self.backoff.run(lambda a=alert: self._post(a), DeliveryFailed, self._retrying, self._stop)  # type: ignore[misc]
            self.catalog.set_alert_cursor(CURSOR, seq)
        return len(page)

    def _retrying(self, exc: Exception, pause_s: float) -> None:
        log.warning("alert webhook: %s; trying again in %.1f s", exc, pause_s)

    def _post(self, alert: pb.Alert) -> None:
        body = json_format.MessageToJson(alert, indent=None).encode()
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Rvs-Signature": signature(self.secret, body),
                "X-Rvs-Alert-Id": alert.alert_id,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            if exc.code >= 500 or exc.code == 429:
                self.deliveries.labels("failed").inc()
                raise DeliveryFailed(f"the receiver answered {exc.code} for alert {alert.alert_id}") from exc
            self.deliveries.labels("refused").inc()
            log.error("alert webhook: the receiver refused alert %s with %d: skipped", alert.alert_id, exc.code)
            return
        except (OSError, urllib.error.URLError) as exc:  # no connection, a timeout
            self.deliveries.labels("failed").inc()
            raise DeliveryFailed(f"cannot reach the receiver: {exc}") from exc
        self.deliveries.labels("delivered").inc()
