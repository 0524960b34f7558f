"""Bounded fuzzing (hypothesis, derandomised so CI is repeatable): the media decoders only ever
raise rvs's MediaError, and the Search RPC only ever answers OK or a documented status code."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from prometheus_client import CollectorRegistry

from rvs.core.faces.pipeline import FacePipeline
from rvs.core.media.errors import MediaError
from rvs.core.media.images import decode_image
from rvs.core.media.video import VideoSampler
from rvs.core.store.faces import open_face_store
from rvs.query.app import QueryService
from rvs.query.config import QuerySettings
from rvs.v1 import rvs_pb2 as pb
from rvs.v1 import rvs_pb2_grpc

from conftest import lfw
from media_factory import cfr_times, synthetic_photo, write_video

DECODER_CASES = 400
VIDEO_CASES = 150
SEARCH_CASES = 300
# What Search may answer; UNKNOWN or INTERNAL would be a bug.
DOCUMENTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.NOT_FOUND,  # a face or track id that is not in the index
}


def _encoded(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(synthetic_photo()).save(out, format=fmt)
    return out.getvalue()


SEEDS = [_encoded("JPEG"), _encoded("PNG"), _encoded("WEBP"), _encoded("GIF"), _encoded("BMP"), _encoded("TIFF")]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A real file with bytes flipped, cut short, or spliced: the inputs that reach deep into decoders."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 8))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(max_size=64))
    return bytes(data)


images = st.one_of(st.binary(max_size=2048), mutated(SEEDS))


@settings(max_examples=DECODER_CASES, deadline=None, derandomize=True)
@given(images)
def test_image_decoder_only_raises_media_errors(data: bytes) -> None:
    try:
        rgb = decode_image(data, max_pixels=20_000_000)
    except MediaError as exc:
        assert exc.reason and exc.detail
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz") / "seed.mp4"
    write_video(path, lambda t: np.full((48, 64, 3), int(t * 40) % 255, np.uint8), cfr_times(3, 10), gop=10)
    return path.read_bytes()


def test_video_sampler_only_raises_media_errors(clip_bytes: bytes, tmp_path: Path) -> None:
    tried = 0

    @settings(max_examples=VIDEO_CASES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(mutated([clip_bytes]))
    def case(data: bytes) -> None:
        nonlocal tried
        tried += 1
        path = tmp_path / "case.mp4"
        path.write_bytes(data)
        try:
            with VideoSampler(path, fps=1.0) as video:
                for sample in video:
                    assert sample.rgb.ndim == 3
        except MediaError as exc:  # the one failure allowed: a clear, reasoned refusal
            assert exc.reason and exc.detail

    case()
    assert tried == VIDEO_CASES


@pytest.fixture(scope="module")
def search_stub(milvus_uri: str) -> Iterator[rvs_pb2_grpc.SearchServiceStub]:
    s = QuerySettings(model="dlib-resnet", port=0, metrics_port=0, web_port=0, collection="fuzz_search")
    pipeline = FacePipeline(s)
    pipeline.load()
    service = QueryService(
        s, pipeline, open_face_store(s, milvus_uri, pipeline.model_name, pipeline.dim), None, CollectorRegistry()
    )
    service.start()
    service.ready()
    with grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        yield rvs_pb2_grpc.SearchServiceStub(channel)
    service.stop(0)


# Face and track ids: well-formed ones (not in the index, or a prefix of one) and any text.
well_formed = st.builds(
    lambda media, t, i: f"{media}:{t}:{i}",
    st.text("0123456789abcdef", min_size=64, max_size=64),
    st.integers(0, 10**15 - 1),
    st.integers(0, 99_999),
)
ids = st.one_of(st.text(max_size=80), well_formed, well_formed, well_formed)


@st.composite
def requests(draw: st.DrawFn, face: bytes) -> pb.SearchRequest:
    """Search requests around `face`, a real photo that Search finds a face in, or by face, track or
    person id or name, with or without rejections."""
    request = draw(
        st.builds(
            pb.SearchRequest,
            top_k=st.one_of(st.just(0), st.integers(0, 2**32 - 1)),
            min_score=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True, width=32)),
            face_index=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
            kinds=st.integers(0, 5),
            source_prefix=st.text(max_size=40),
            ingested_after_ms=st.integers(-(2**63), 2**63 - 1),
            ingested_before_ms=st.integers(-(2**63), 2**63 - 1),
            rejected_face_ids=st.sampled_from([[], [], [], ["0" * 64 + ":0:0"] * 257])
            | st.lists(well_formed, max_size=3),
            rejected_track_ids=st.sampled_from([[], [], [], []]) | st.lists(ids, max_size=2),
        )
    )
    query = draw(st.sampled_from(["image", "image", "image", "face_id", "track_id", "person_id", "person_name"]))
    if query == "image":
        request.image = draw(st.one_of(images, st.just(face)))
    else:
        setattr(request, query, draw(ids))
    return request


def test_search_answers_only_documented_codes(search_stub: rvs_pb2_grpc.SearchServiceStub) -> None:
    seen: dict[grpc.StatusCode, int] = {}

    @settings(max_examples=SEARCH_CASES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(requests(lfw("Tony_Blair", 1).read_bytes()))
    def case(request: pb.SearchRequest) -> None:
        try:
            search_stub.Search(request, timeout=60)
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()
            assert exc.details(), code
        seen[code] = seen.get(code, 0) + 1
        assert code in DOCUMENTED, (code, request)

    case()
    print(f"Search fuzz: {sum(seen.values())} requests, codes {dict((c.name, n) for c, n in seen.items())}")
    assert sum(seen.values()) == SEARCH_CASES
    assert {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT} <= set(seen)
