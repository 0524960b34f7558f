"""The search page's HTTP API and static files, as a Starlette app: its routes and their handlers.

Search runs through the SearchEngine the gRPC API uses; errors carry the same ErrorInfo reasons, in
Google's JSON error format (errors.py); answers are the proto messages in their canonical JSON
mapping. The query photo or clip is analysed once: its faces (a clip's people) are kept under a
query id (queries.py), so changing the threshold, the face or the rejections searches again without
sending it again. "More like this" searches with a face or track of the index (no upload). Around it
all, the Guard (guard.py): host, origin, credentials (login.py), security headers and metrics.
"""

from __future__ import annotations

import logging
import mimetypes
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from rvs.core.api_errors import Reason
from rvs.core.catalog import Catalog
from rvs.core.faces.types import Face
from rvs.core.media.errors import MediaError
from rvs.query.alerts.watches import WatchList, describe_watch_error
from rvs.query.clip_search import MAX_TRACKS, ClipSearch, describe_clip_error
from rvs.query.config import QuerySettings
from rvs.query.errors import Failure
from rvs.query.media import media_id_problem, media_page
from rvs.query.metrics import QueryMetrics
from rvs.query.people.directory import MAX_MOVED, People, describe_people_error
from rvs.query.search import MAX_UNIX_MS, ModelChanged, SearchEngine, describe_error
from rvs.query.web.errors import ApiError, on_api_error
from rvs.query.web.files import MediaFiles
from rvs.query.web.guard import Guard
from rvs.query.web.login import Login
from rvs.query.web.parsing import (
    add_rejections,
    box_param,
    clip_too_large,
    ids_limit,
    int_param,
    json_fields,
    read_body,
    search_request,
    similar_request,
)
from rvs.query.web.queries import KEPT_CLIPS, KeptClip, RecentQueries
from rvs.query.web.stills import Box, NoFrame, StillCache, StillKey, clip_frames, render
from rvs.v1 import rvs_pb2 as pb

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
CLIP_FRAME_SIDE = 320  # the best frame of each person of a query clip, made once and kept with the query

T = TypeVar("T")


def proto_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def box_of(box: pb.Box) -> Box:
    return round(box.x1), round(box.y1), round(box.x2), round(box.y2)


class SearchPage:
    """The routes; `asgi` is the app to serve (the Guard around them)."""

    def __init__(
        self,
        settings: QuerySettings,
        engine: SearchEngine,
        catalog: Catalog | None,
        metrics: QueryMetrics,
        tls: bool,
        watches: WatchList | None = None,
    ) -> None:
        self.settings = settings
        self.watches = watches
        self.engine = engine
        self.catalog = catalog
        self.metrics = metrics
        self.stills = StillCache(settings.web_cache_bytes)
        self.files = MediaFiles(settings.web_media_dirs)
        self.queries: RecentQueries[list[Face]] = RecentQueries()
        self.clip_search = ClipSearch(settings, engine)
        self.clips: RecentQueries[KeptClip] = RecentQueries(KEPT_CLIPS)
        self.login = Login(settings, tls)
        self._limiter: anyio.CapacityLimiter | None = None
        self.app = Starlette(
            routes=[
                Route("/", self.index),
                Route("/api/session", self.login.session, methods=["GET"]),
                Route("/api/session", self.login.login, methods=["POST"]),
                Route("/api/session", self.login.logout, methods=["DELETE"]),
                Route("/api/limits", self.limits),
                Route("/api/search", self.search, methods=["POST"]),
                Route("/api/search/{query_id}", self.search_again, methods=["GET", "POST"]),
                Route("/api/similar", self.similar, methods=["POST"]),
                Route("/api/clip", self.clip, methods=["POST"]),
                Route("/api/clip/{query_id}", self.clip_again, methods=["GET", "POST"]),
                Route("/api/clip/{query_id}/frames/{index}", self.clip_frame),
                Route("/api/media", self.list_media),
                Route("/api/media/{media_id}", self.get_media),
                Route("/api/media/{media_id}/file", self.media_file),
                Route("/api/media/{media_id}/frame", self.frame),
                Route("/api/people", self.list_people),
                # Before /api/people/{person_id}, which "move" would match.
                Route("/api/people/move", self.move_to_person, methods=["POST"]),
                Route("/api/people/{person_id}", self.get_person, methods=["GET"]),
                Route("/api/people/{person_id}", self.rename_person, methods=["POST"]),
                Route("/api/people/{person_id}/merge", self.merge_people, methods=["POST"]),
                Route("/api/watches", self.list_watches, methods=["GET"]),
                Route("/api/watches", self.add_watch, methods=["POST"]),
                Route("/api/watches/{watch_id}", self.delete_watch, methods=["DELETE"]),
                Route("/api/alerts", self.alerts),
                Mount("/static", StaticFiles(directory=STATIC)),
            ],
            exception_handlers={ApiError: on_api_error},
        )
        self.asgi = Guard(self.app, metrics, settings, self.login)

    async def _blocking(
        self, fn: Callable[[], T], describe: Callable[[Exception], Failure | None] = describe_error
    ) -> T:
        """Run costly work (models, decoding, Milvus) on a worker thread, at most rpc_workers at once."""
        if self._limiter is None:  # made in the server's event loop
            self._limiter = anyio.CapacityLimiter(self.settings.rpc_workers)
        try:
            return await anyio.to_thread.run_sync(fn, limiter=self._limiter)
        except ApiError:
            raise
        except Exception as exc:
            described = describe(exc)
            if described is None:
                log.exception("search page request failed")
                message = "internal error; see the query service's log"
                raise ApiError(code_pb2.INTERNAL, Reason.INTERNAL, message) from exc
            raise ApiError(*described) from exc

    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    # -- search ----------------------------------------------------------------------------------

    async def search(self, request: Request) -> Response:
        """POST the photo's bytes; options in the query string (top_k, min_score, face_index, kinds,
        source_prefix). Answers {"queryId", "result": SearchResponse}."""
        search = search_request(request.query_params)
        image = await read_body(request, self.settings.max_message_bytes, self.settings.rpc_deadline_s)
        deadline = time.monotonic() + self.settings.rpc_deadline_s

        def run() -> tuple[list[Face], pb.SearchResponse]:
            try:
                faces = self.engine.analyse(image, deadline)
                return faces, self.engine.search_faces(faces, search, deadline)
            except ModelChanged:  # the index switched models between the two steps: once more
                faces = self.engine.analyse(image, deadline)
                return faces, self.engine.search_faces(faces, search, deadline)

        faces, response = await self._blocking(run)
        return self._answer(self.queries.keep(faces), response)

    async def search_again(self, request: Request) -> Response:
        """The photo of an earlier POST, searched with other options: no upload, no face detection.
        A POST's body carries the query's rejections ("not this person")."""
        query_id = request.path_params["query_id"]
        faces = self.queries.get(query_id)
        if faces is None:
            message = "this query is no longer kept: send the photo again"
            raise ApiError(code_pb2.NOT_FOUND, Reason.QUERY_EXPIRED, message)
        search = search_request(request.query_params)
        await self._rejections(request, search)
        deadline = time.monotonic() + self.settings.rpc_deadline_s

        def run() -> pb.SearchResponse:
            try:
                return self.engine.search_faces(faces, search, deadline)
            except ModelChanged as exc:  # kept faces of the model of before a reindex's switch
                self.queries.forget(query_id)
                raise ApiError(
                    code_pb2.NOT_FOUND, Reason.QUERY_EXPIRED, f"this query is no longer kept: {exc}"
                ) from exc

        return self._answer(query_id, await self._blocking(run))

    async def similar(self, request: Request) -> Response:
        """ "More like this": search with a face (face_id), track (track_id) or person (person_id,
        person_name) of the index, no upload; the body carries rejections. Answers {"result":
        SearchResponse}."""
        search = similar_request(request.query_params)
        await self._rejections(request, search)
        deadline = time.monotonic() + self.settings.rpc_deadline_s
        response = await self._blocking(lambda: self.engine.search(search, deadline))
        self._observe(response)
        return JSONResponse({"result": proto_json(response)})

    async def _rejections(self, request: Request, search: pb.SearchRequest) -> None:
        if request.method == "POST":
            limit = ids_limit(self.settings.max_rejections)
            add_rejections(await read_body(request, limit, self.settings.rpc_deadline_s), search)

    def _observe(self, response: pb.SearchResponse) -> None:
        self.metrics.search_hits.observe(len(response.images) + sum(len(v.segments) for v in response.videos))

    def _answer(self, query_id: str, response: pb.SearchResponse) -> Response:
        self._observe(response)
        return JSONResponse({"queryId": query_id, "result": proto_json(response)})

    # -- query clips -----------------------------------------------------------------------------

    async def clip(self, request: Request) -> Response:
        """POST a clip (at most max_query_video_bytes), options in the query string as for a photo,
        and max_tracks. Each person of the clip is searched (SearchByVideo); answers {"queryId",
        "result": SearchByVideoResponse}, each person's best frame at .../frames/{index}."""
        search = search_request(request.query_params)
        asked = int_param(request.query_params, "max_tracks", 0, 0, MAX_TRACKS)
        limit = self.settings.max_query_video_bytes
        video = await read_body(request, limit, self.settings.rpc_deadline_s, clip_too_large)
        deadline = time.monotonic() + self.settings.rpc_deadline_s

        def run() -> tuple[KeptClip, pb.SearchByVideoResponse]:
            self.engine.check(search)  # cheap checks before the costly sampling
            active = self.engine.active  # analysed and searched with one model
            clip = self.clip_search.analyse(video, self.clip_search.max_tracks(asked), deadline, active[0])
            response = self.clip_search.answer(clip, search, deadline, active)
            shots = [(p.where.best_time_ms, box_of(p.where.best_box)) for p in clip.people]
            return KeptClip(clip, clip_frames(video, shots, CLIP_FRAME_SIDE, deadline)), response

        kept, response = await self._blocking(run, describe_clip_error)
        return self._clip_answer(self.clips.keep(kept), response)

    def _kept_clip(self, query_id: str) -> KeptClip:
        kept = self.clips.get(query_id)
        if kept is None:
            message = "this clip query is no longer kept: send the clip again"
            raise ApiError(code_pb2.NOT_FOUND, Reason.QUERY_EXPIRED, message)
        return kept

    async def clip_again(self, request: Request) -> Response:
        """The people of an earlier clip, searched with other options (a POST: and rejections)."""
        query_id = request.path_params["query_id"]
        kept = self._kept_clip(query_id)
        search = search_request(request.query_params)
        await self._rejections(request, search)
        deadline = time.monotonic() + self.settings.rpc_deadline_s

        def run() -> pb.SearchByVideoResponse:
            try:
                return self.clip_search.answer(kept.clip, search, deadline)
            except ModelChanged as exc:
                self.clips.forget(query_id)
                raise ApiError(
                    code_pb2.NOT_FOUND, Reason.QUERY_EXPIRED, f"this query is no longer kept: {exc}"
                ) from exc

        return self._clip_answer(query_id, await self._blocking(run, describe_clip_error))

    def _clip_answer(self, query_id: str, response: pb.SearchByVideoResponse) -> Response:
        for track in response.tracks:
            self._observe(track.answer)
        return JSONResponse({"queryId": query_id, "result": proto_json(response)})

    def clip_frame(self, request: Request) -> Response:
        """The best frame of a person of a kept query clip (in the order of its answer), face boxed."""
        kept = self._kept_clip(request.path_params["query_id"])
        index = request.path_params["index"]
        frame = kept.frames[int(index)] if index.isdigit() and int(index) < len(kept.frames) else None
        if frame is None:
            message = f"no frame {index[:20]!r} for this clip: it has {len(kept.frames)} people, numbered from 0"
            raise ApiError(code_pb2.NOT_FOUND, Reason.FRAME_NOT_FOUND, message)
        return Response(frame, media_type="image/jpeg", headers={"cache-control": "private, max-age=3600, immutable"})

    def limits(self, request: Request) -> Response:
        """What the page checks before it sends: sizes, and how many results one query may reject."""
        s = self.settings
        return JSONResponse(
            {
                "maxMessageBytes": s.max_message_bytes,
                "maxQueryVideoBytes": s.max_query_video_bytes,
                "maxQueryVideoS": s.max_query_video_s,
                "maxRejections": s.max_rejections,
            }
        )

    # -- media -----------------------------------------------------------------------------------

    def _catalog(self) -> Catalog:
        if self.catalog is None:
            raise ApiError(code_pb2.UNIMPLEMENTED, Reason.NO_CATALOG, "this query service has no media catalog")
        return self.catalog

    def list_media(self, request: Request) -> Response:
        """The ingest status of every item, paged as ListMedia is."""
        size = int_param(request.query_params, "page_size", 500, 1, 1000)
        offset = int_param(request.query_params, "page_token", 0, 0, 1 << 62)
        return JSONResponse(proto_json(media_page(self._catalog(), offset, size)))

    def _media(self, media_id: str) -> pb.Media:
        problem = media_id_problem(media_id)
        if problem is not None:
            raise ApiError(code_pb2.INVALID_ARGUMENT, Reason.INVALID_PARAMETER, problem)
        media = self._catalog().get(media_id)
        if media is None or media.state == pb.MEDIA_STATE_DELETED:
            raise ApiError(code_pb2.NOT_FOUND, Reason.MEDIA_NOT_FOUND, f"no media with id {media_id!r}")
        return media

    def get_media(self, request: Request) -> Response:
        return JSONResponse(proto_json(self._media(request.path_params["media_id"])))

    async def _local_file(self, media_id: str) -> tuple[pb.Media, Path]:
        """The original file of a media item the catalog knows (never a path the client names), while
        it is still what was indexed (hashing it is costly work, hence the limiter)."""
        media = await run_in_threadpool(self._media, media_id)
        if media.stream and not media.uri.startswith("/"):
            raise ApiError(
                code_pb2.UNIMPLEMENTED,
                Reason.MEDIA_NOT_LOCAL,
                f"this segment of stream {media.stream} was not recorded (RVS_RECORDING_DIR): only its frames are kept",
            )
        if "://" in media.uri:
            raise ApiError(
                code_pb2.UNIMPLEMENTED,
                Reason.MEDIA_NOT_LOCAL,
                f"{media.uri} is not a file on this machine: the page shows frames and plays videos of files only",
            )
        # A stream's recording is rvs's own file, named by the segment, not by its content.
        hashed = not media.stream
        path = await self._blocking(lambda: self.files.verified(media.uri, media.media_id, hashed))  # raises NotServed
        return media, path

    async def media_file(self, request: Request) -> Response:
        """The original photo or video, with Range requests (a video seeks without loading it all)."""
        _, path = await self._local_file(request.path_params["media_id"])
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=kind, headers={"cache-control": "private, max-age=3600"})

    async def frame(self, request: Request) -> Response:
        """A JPEG of the photo, or of the video's frame at t_ms, at most `side` pixels on its long
        side, with the face `box` drawn; made on demand and cached."""
        params = request.query_params
        time_ms = int_param(params, "t_ms", 0, 0, 1 << 40)
        side = int_param(params, "side", 320, 32, 1920)
        box = box_param(params)
        media, path = await self._local_file(request.path_params["media_id"])
        is_video = media.kind == pb.MEDIA_KIND_VIDEO
        key = StillKey(media.media_id, time_ms if is_video else 0, box, side)
        data = self.stills.get(key)
        cache = "hit" if data is not None else "miss"
        if data is None:

            def unreadable(exc: Exception) -> Failure | None:
                if isinstance(exc, NoFrame):
                    return code_pb2.NOT_FOUND, Reason.FRAME_NOT_FOUND, str(exc)
                if isinstance(exc, MediaError):
                    return code_pb2.FAILED_PRECONDITION, exc.reason, f"cannot read {media.uri}: {exc.detail}"
                return None

            data = await self._blocking(lambda: render(path, is_video, time_ms, box, side), unreadable)
            self.stills.put(key, data)
        self.metrics.web_stills.labels(cache).inc()
        # The media id is a content hash: this picture never changes.
        headers = {"cache-control": "private, max-age=86400, immutable", "x-rvs-cache": cache}
        return Response(data, media_type="image/jpeg", headers=headers)

    # -- people ----------------------------------------------------------------------------------

    def _people(self) -> People:
        if self.engine.people is None:
            raise ApiError(code_pb2.UNIMPLEMENTED, Reason.NO_CATALOG, "this query service has no catalog of people")
        return self.engine.people

    async def _edit(self, request: Request, fields: dict[str, type], shape: str) -> dict[str, Any]:
        """The JSON body of an edit of people, within the size of MAX_MOVED ids."""
        body = await read_body(request, ids_limit(MAX_MOVED), self.settings.rpc_deadline_s)
        return json_fields(body, fields, shape)

    async def _person_answer(self, use_case: Callable[[], Message]) -> Response:
        return JSONResponse(proto_json(await self._blocking(use_case, describe_people_error)))

    async def list_people(self, request: Request) -> Response:
        """People, most faces first, paged as ListPeople is; named_only=true, name_prefix."""
        params = request.query_params
        listed = pb.ListPeopleRequest(
            page_size=int_param(params, "page_size", 100, 1, 1000),
            page_token=params.get("page_token", ""),
            named_only=params.get("named_only", "") in ("true", "1"),
            name_prefix=params.get("name_prefix", ""),
        )
        people = self._people()
        return await self._person_answer(lambda: people.list(listed))

    async def get_person(self, request: Request) -> Response:
        """The person and every photo and segment of theirs: {"person", "answer": SearchResponse}."""
        asked = pb.GetPersonRequest(
            person_id=request.path_params["person_id"], top_k=int_param(request.query_params, "top_k", 0, 0, 1 << 31)
        )
        people = self._people()
        return await self._person_answer(lambda: people.get(asked))

    async def rename_person(self, request: Request) -> Response:
        """Body {"name": "..."} ("" unnames); answers the Person."""
        people = self._people()
        body = await self._edit(request, {"name": str}, '{"name": "a name, or empty to unname"}')
        if "name" not in body:
            raise ApiError(
                code_pb2.INVALID_ARGUMENT, Reason.INVALID_PARAMETER, 'the body must name the person: {"name": "..."}'
            )
        renamed = pb.UpdatePersonRequest(person_id=request.path_params["person_id"], name=body["name"])
        return await self._person_answer(lambda: people.rename(renamed))

    async def merge_people(self, request: Request) -> Response:
        """Body {"people": [person ids]}, merged into this one; answers the Person merged into."""
        people = self._people()
        body = await self._edit(request, {"people": list}, '{"people": [person ids]}')
        merged = pb.MergePeopleRequest(into=request.path_params["person_id"], people=body.get("people", []))
        return await self._person_answer(lambda: people.merge(merged))

    async def move_to_person(self, request: Request) -> Response:
        """Body {"unitIds": [face or track ids], "personId"?, "name"?}: to that person, to the person
        of that name (a new one if nobody has it: "this is <name>"), or to a new person (neither: a
        split). Answers the Person moved to."""
        people = self._people()
        shape = '{"unitIds": [face or track ids], "personId": "person-…" or "name": "…" or neither}'
        body = await self._edit(request, {"unitIds": list, "personId": str, "name": str}, shape)
        if "personId" in body and "name" in body:
            raise ApiError(code_pb2.INVALID_ARGUMENT, Reason.INVALID_PARAMETER, f"personId or name, not both: {shape}")
        moved = pb.MoveToPersonRequest(unit_ids=body.get("unitIds", []))
        if "personId" in body:
            moved.person_id = body["personId"]
        elif "name" in body:
            moved.name = body["name"]
        return await self._person_answer(lambda: people.move(moved))

    # -- the watch list and alerts ---------------------------------------------------------------

    def _watch_list(self) -> WatchList:
        if self.watches is None:
            raise ApiError(code_pb2.UNIMPLEMENTED, Reason.NO_CATALOG, "this query service has no watch list")
        return self.watches

    async def list_watches(self, request: Request) -> Response:
        watches = self._watch_list()
        return JSONResponse(proto_json(await self._blocking(watches.list, describe_watch_error)))

    async def add_watch(self, request: Request) -> Response:
        """Body: an AddWatchRequest as JSON ({"name", "images": [base64], "threshold"?, "kind"?});
        answers the Watch."""
        watches = self._watch_list()
        body = await read_body(request, self.settings.max_message_bytes, self.settings.rpc_deadline_s)
        try:
            added = json_format.Parse(body, pb.AddWatchRequest())
        except (json_format.ParseError, UnicodeDecodeError) as exc:
            shape = '{"name": "...", "images": [base64 photos], "threshold": 0.6, "kind": "WATCH_KIND_MUTE"}'
            message = f"the body must be an AddWatchRequest as JSON, {shape}: {str(exc)[:200]}"
            raise ApiError(code_pb2.INVALID_ARGUMENT, Reason.INVALID_PARAMETER, message) from exc
        deadline = time.monotonic() + self.settings.rpc_deadline_s
        return JSONResponse(
            proto_json(await self._blocking(lambda: watches.add(added, deadline), describe_watch_error))
        )

    async def delete_watch(self, request: Request) -> Response:
        watches = self._watch_list()
        deleted = pb.DeleteWatchRequest(watch_id=request.path_params["watch_id"])
        return JSONResponse(proto_json(await self._blocking(lambda: watches.delete(deleted), describe_watch_error)))

    def alerts(self, request: Request) -> Response:
        """The live alerts panel polls this: the alerts folded after `after` (a seq this answered as
        `next`; 0: from the first kept), raised at or after since_ms, oldest first; without either,
        none yet and where to start from. Answers {"alerts": [Alert], "next": seq}."""
        params = request.query_params
        after = int_param(params, "after", 0, 0, 1 << 62)
        since = int_param(params, "since_ms", 0, 0, MAX_UNIX_MS)
        limit = int_param(params, "limit", 100, 1, 1000)
        catalog = self._catalog()
        if "after" not in params and not since:
            return JSONResponse({"alerts": [], "next": str(catalog.last_alert_seq())})
        found = catalog.alerts(after_seq=after, since_ms=since, limit=limit)
        next_seq = found[-1][0] if found else after
        return JSONResponse({"alerts": [proto_json(a) for _, a in found], "next": str(next_seq)})
