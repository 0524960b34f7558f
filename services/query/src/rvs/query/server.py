"""gRPC servicer and server: health checking and reflection on, errors as documented status codes."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any, TypeVar

import grpc
from google.rpc import code_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from rvs.core.api_errors import Reason
from rvs.core.bus import BusUnavailable, removal
from rvs.core.catalog import Catalog
from rvs.core.faces.registry import MODELS
from rvs.core.faces.types import ModelUnavailable
from rvs.core.store.faces import IndexModelMismatch, StoreUnavailable
from rvs.query.alerts.feed import AlertFeed, TooManyStreams, alert_filter
from rvs.query.alerts.watches import WatchList, describe_watch_error
from rvs.query.clip_search import ClipSearch, describe_clip_error
from rvs.query.config import QuerySettings
from rvs.query.errors import Failure, error_status
from rvs.query.media import InvalidPageToken, media_id_problem, media_page, page_offset
from rvs.query.metrics import QueryMetrics
from rvs.query.people.directory import People, describe_people_error
from rvs.query.search import SearchEngine, describe_error
from rvs.query.security import BearerAuth, server_credentials
from rvs.v1 import rvs_pb2 as pb
from rvs.v1 import rvs_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SearchService"].full_name

T = TypeVar("T")


def abort(context: grpc.ServicerContext, code: int, reason: str, message: str) -> None:
    """Abort with a google.rpc.Status carrying ErrorInfo(reason), so clients can branch on reason."""
    context.abort_with_status(rpc_status.to_status(error_status(code, reason, message)))


def _instrumented(method: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    def wrap(handler: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(handler)
        def run(self: SearchServicer, request: Any, context: grpc.ServicerContext) -> T:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                return handler(self, request, context)
            except Exception:
                code = context.code() or grpc.StatusCode.UNKNOWN  # set by abort(); else a bug
                raise
            finally:
                self.metrics.rpc_seconds.labels(method).observe(time.perf_counter() - started)
                self.metrics.rpcs.labels(method, code.name).inc()

        return run

    return wrap


def _hits(response: pb.SearchResponse) -> int:
    return len(response.images) + sum(len(v.segments) for v in response.videos)


def check_media_id(context: grpc.ServicerContext, media_id: str) -> None:
    problem = media_id_problem(media_id)
    if problem is not None:
        abort(context, code_pb2.INVALID_ARGUMENT, Reason.INVALID_PARAMETER, problem)


class SearchServicer(rvs_pb2_grpc.SearchServiceServicer):
    def __init__(
        self,
        engine: SearchEngine,
        catalog: Catalog | None,
        metrics: QueryMetrics,
        rpc_deadline_s: float = 30.0,
        remove_media: Callable[[str], int] | None = None,
        start_reindex: Callable[[str], None] | None = None,
        delete_faces: Callable[[str], int] | None = None,
        people: People | None = None,
        watches: WatchList | None = None,
        alerts: AlertFeed | None = None,
    ) -> None:
        """`start_reindex` records a reindex request for every service (None: no bus to record it
        on); `delete_faces` deletes a media item's faces from every model's collection; `people`:
        None without a catalog."""
        self.engine = engine
        self.clips = ClipSearch(engine.settings, engine)
        self.catalog = catalog
        self.metrics = metrics
        self.rpc_deadline_s = rpc_deadline_s
        self.remove_media = remove_media or self._remove_here
        self.start_reindex = start_reindex
        self.delete_faces = delete_faces or engine.delete_media
        self.people = people
        self.watches = watches
        self.alerts = alerts

    @_instrumented("Search")
    def Search(self, request: pb.SearchRequest, context: grpc.ServicerContext) -> pb.SearchResponse:
        response = self._run("Search", self.engine.search, request, context, describe_error)
        self.metrics.search_hits.observe(_hits(response))
        return response

    @_instrumented("SearchByVideo")
    def SearchByVideo(
        self, request: pb.SearchByVideoRequest, context: grpc.ServicerContext
    ) -> pb.SearchByVideoResponse:
        response = self._run("SearchByVideo", self.clips.search, request, context, describe_clip_error)
        for track in response.tracks:
            self.metrics.search_hits.observe(_hits(track.answer))
        return response

    def _run(
        self,
        method: str,
        use_case: Callable[[Any, float], T],
        request: Any,
        context: grpc.ServicerContext,
        describe: Callable[[Exception], Failure | None],
    ) -> T:
        """Run a search use case within the RPC's deadline; its documented failures as status codes."""
        remaining = context.time_remaining()
        budget = self.rpc_deadline_s if remaining is None else min(self.rpc_deadline_s, remaining)
        try:
            return use_case(request, time.monotonic() + budget)
        except Exception as exc:
            described = describe(exc)
            if described is None:
                log.exception("%s failed", method)
                abort(context, code_pb2.INTERNAL, Reason.INTERNAL, "internal error; see the query service's log")
            else:
                abort(context, *described)
            raise  # abort() raised already

    def _need_catalog(self, context: grpc.ServicerContext) -> Catalog:
        if self.catalog is None:
            abort(context, code_pb2.UNIMPLEMENTED, Reason.NO_CATALOG, "this query service has no media catalog")
        assert self.catalog is not None
        return self.catalog

    @_instrumented("ListMedia")
    def ListMedia(self, request: pb.ListMediaRequest, context: grpc.ServicerContext) -> pb.ListMediaResponse:
        catalog = self._need_catalog(context)
        size = min(request.page_size or 100, 1000)
        try:
            offset = page_offset(request.page_token)
        except InvalidPageToken as exc:
            abort(context, code_pb2.INVALID_ARGUMENT, Reason.INVALID_PAGE_TOKEN, str(exc))
        return media_page(catalog, offset, size, request.state)

    @_instrumented("GetMedia")
    def GetMedia(self, request: pb.GetMediaRequest, context: grpc.ServicerContext) -> pb.Media:
        check_media_id(context, request.media_id)
        media = self._need_catalog(context).get(request.media_id)
        if media is None:
            abort(context, code_pb2.NOT_FOUND, Reason.MEDIA_NOT_FOUND, f"no media with id {request.media_id!r}")
        assert media is not None
        return media

    @_instrumented("DeleteMedia")
    def DeleteMedia(self, request: pb.DeleteMediaRequest, context: grpc.ServicerContext) -> pb.DeleteMediaResponse:
        check_media_id(context, request.media_id)
        known = self.catalog.get(request.media_id) if self.catalog else None
        # An id the catalog does not know has no ingest to stop: only stray faces to delete.
        remove = self.remove_media if known is not None else self.delete_faces
        try:
            removed = remove(request.media_id)
        except StoreUnavailable as exc:
            abort(context, code_pb2.UNAVAILABLE, Reason.INDEX_UNAVAILABLE, str(exc))
        except BusUnavailable as exc:
            abort(context, code_pb2.UNAVAILABLE, Reason.BUS_UNAVAILABLE, f"the removal was not recorded: {exc}")
        if known is None and not removed:
            abort(context, code_pb2.NOT_FOUND, Reason.MEDIA_NOT_FOUND, f"no media with id {request.media_id!r}")
        return pb.DeleteMediaResponse(faces_removed=removed)

    @_instrumented("Reindex")
    def Reindex(self, request: pb.ReindexRequest, context: grpc.ServicerContext) -> pb.ReindexStatus:
        catalog = self._need_catalog(context)
        model = request.model
        if model not in MODELS:
            known = ", ".join(sorted(MODELS))
            message = f"unknown model {model[:64]!r}; one of {known}"
            abort(context, code_pb2.INVALID_ARGUMENT, Reason.UNKNOWN_MODEL, message)
        running = catalog.reindex_target()
        if running and running != model:
            abort(
                context,
                code_pb2.FAILED_PRECONDITION,
                Reason.REINDEX_RUNNING,
                f"a reindex into {running} is running; wait until it switches (rvs status), then reindex again",
            )
        if not running and model != catalog.active_model():
            if self.start_reindex is None:
                message = "this query service cannot reach the other services"
                abort(context, code_pb2.UNIMPLEMENTED, Reason.NO_BUS, message)
            assert self.start_reindex is not None
            try:
                self.start_reindex(model)
            except (ModelUnavailable, IndexModelMismatch) as exc:
                abort(context, code_pb2.FAILED_PRECONDITION, Reason.MODEL_UNAVAILABLE, str(exc))
            except StoreUnavailable as exc:
                abort(context, code_pb2.UNAVAILABLE, Reason.INDEX_UNAVAILABLE, str(exc))
            except BusUnavailable as exc:
                abort(context, code_pb2.UNAVAILABLE, Reason.BUS_UNAVAILABLE, f"the reindex was not recorded: {exc}")
        return catalog.reindex_status()

    @_instrumented("GetReindex")
    def GetReindex(self, request: pb.GetReindexRequest, context: grpc.ServicerContext) -> pb.ReindexStatus:
        return self._need_catalog(context).reindex_status()

    def _people(self, method: str, use_case: Callable[[Any], T], request: Any, context: grpc.ServicerContext) -> T:
        if self.people is None:
            abort(context, code_pb2.UNIMPLEMENTED, Reason.NO_CATALOG, "this query service has no catalog of people")
        return self._run(method, lambda r, _deadline: use_case(r), request, context, describe_people_error)

    @_instrumented("ListPeople")
    def ListPeople(self, request: pb.ListPeopleRequest, context: grpc.ServicerContext) -> pb.ListPeopleResponse:
        return self._people("ListPeople", lambda r: self.people.list(r), request, context)  # type: ignore[union-attr]

    @_instrumented("GetPerson")
    def GetPerson(self, request: pb.GetPersonRequest, context: grpc.ServicerContext) -> pb.GetPersonResponse:
        return self._people("GetPerson", lambda r: self.people.get(r), request, context)  # type: ignore[union-attr]

    @_instrumented("UpdatePerson")
    def UpdatePerson(self, request: pb.UpdatePersonRequest, context: grpc.ServicerContext) -> pb.Person:
        return self._people("UpdatePerson", lambda r: self.people.rename(r), request, context)  # type: ignore[union-attr]

    @_instrumented("MergePeople")
    def MergePeople(self, request: pb.MergePeopleRequest, context: grpc.ServicerContext) -> pb.Person:
        return self._people("MergePeople", lambda r: self.people.merge(r), request, context)  # type: ignore[union-attr]

    @_instrumented("MoveToPerson")
    def MoveToPerson(self, request: pb.MoveToPersonRequest, context: grpc.ServicerContext) -> pb.Person:
        return self._people("MoveToPerson", lambda r: self.people.move(r), request, context)  # type: ignore[union-attr]

    def _watch_list(
        self, method: str, use_case: Callable[[WatchList, Any, float], T], request: Any, context: grpc.ServicerContext
    ) -> T:
        watches = self.watches
        if watches is None:
            abort(context, code_pb2.UNIMPLEMENTED, Reason.NO_CATALOG, "this query service has no watch list")
        assert watches is not None
        return self._run(
            method, lambda r, deadline: use_case(watches, r, deadline), request, context, describe_watch_error
        )

    @_instrumented("AddWatch")
    def AddWatch(self, request: pb.AddWatchRequest, context: grpc.ServicerContext) -> pb.Watch:
        return self._watch_list("AddWatch", lambda w, r, d: w.add(r, d), request, context)

    @_instrumented("ListWatches")
    def ListWatches(self, request: pb.ListWatchesRequest, context: grpc.ServicerContext) -> pb.ListWatchesResponse:
        return self._watch_list("ListWatches", lambda w, r, d: w.list(), request, context)

    @_instrumented("DeleteWatch")
    def DeleteWatch(self, request: pb.DeleteWatchRequest, context: grpc.ServicerContext) -> pb.DeleteWatchResponse:
        return self._watch_list("DeleteWatch", lambda w, r, d: w.delete(r), request, context)

    def WatchAlerts(self, request: pb.WatchAlertsRequest, context: grpc.ServicerContext) -> Iterator[pb.Alert]:
        """Counted when it ends (rvs_rpcs); its time is how long the client followed, so not observed."""
        code = grpc.StatusCode.OK
        try:
            if self.alerts is None:
                abort(context, code_pb2.UNIMPLEMENTED, Reason.NO_CATALOG, "this query service has no alerts")
            assert self.alerts is not None
            try:
                wanted = alert_filter(request)
                alerts = self.alerts.follow(request.since_ms, wanted, context.is_active)
                first = next(alerts, None)  # TooManyStreams before anything is sent
            except TooManyStreams as exc:
                abort(context, code_pb2.RESOURCE_EXHAUSTED, Reason.TOO_MANY_STREAMS, str(exc))
            except Exception as exc:
                described = describe_watch_error(exc)
                if described is None:
                    raise
                abort(context, *described)
            if first is not None:
                yield first
                yield from alerts
        except Exception:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        finally:
            self.metrics.rpcs.labels("WatchAlerts", code.name).inc()

    def _remove_here(self, media_id: str) -> int:
        """A query service alone (no bus): its own catalog and the index."""
        removed = self.delete_faces(media_id)
        if self.catalog is not None:
            self.catalog.apply(removal(media_id))
        return removed


def _options(settings: QuerySettings) -> list[tuple[str, int]]:
    def ms(seconds: float) -> int:
        return max(1, round(seconds * 1000))

    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", ms(settings.grpc_keepalive_s)),
        ("grpc.keepalive_timeout_ms", ms(settings.grpc_keepalive_timeout_s)),
        ("grpc.max_connection_idle_ms", ms(settings.grpc_max_connection_idle_s)),
        ("grpc.max_connection_age_ms", ms(settings.grpc_max_connection_age_s)),
        ("grpc.max_connection_age_grace_ms", ms(settings.grpc_max_connection_age_grace_s)),
    ]


class QueryServer:
    """The gRPC server with the Search API, health checking and reflection."""

    def __init__(self, settings: QuerySettings, servicer: SearchServicer) -> None:
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self.serving = False
        interceptors = []
        if settings.auth_token is not None:
            metrics = servicer.metrics

            def refused(method: str) -> None:
                metrics.rpcs.labels(method.rsplit("/", 1)[-1], grpc.StatusCode.UNAUTHENTICATED.name).inc()

            interceptors.append(BearerAuth(settings.auth_token.get_secret_value(), refused, abort))
        # A thread for every RPC admitted: a call holds one while its message has not come (gRPC reads it
        # on the thread), so threads must not be what runs out. Costly work has its own slots
        # (SearchEngine), and connection ages bound how long a stalled call can hold a thread.
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=settings.max_concurrent_rpcs, thread_name_prefix="grpc"),
            options=_options(settings),
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
            interceptors=interceptors,
        )
        rvs_pb2_grpc.add_SearchServiceServicer_to_server(servicer, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server)
        address = f"{settings.host}:{settings.port}"
        credentials = server_credentials(settings)
        self.tls = credentials is not None
        if credentials is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, credentials)
        if not self.port:
            raise RuntimeError(f"cannot listen on {settings.host}:{settings.port}")
        self.set_serving(False)

    def set_serving(self, serving: bool) -> None:
        self.serving = serving
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        self.health.set("", status)
        self.health.set(SERVICE_NAME, status)

    def start(self) -> None:
        self.server.start()

    def stop(self, grace_s: float = 5.0) -> None:
        self.set_serving(False)
        self.server.stop(grace_s).wait()
