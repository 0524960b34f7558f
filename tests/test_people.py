"""People through the gRPC API on the real corpus (sface+yunet, embedded Milvus, embedded mode): the
clips' tracks and the photos clustered into people, named, searched by name, merged, split, moved
("this is <name>"), following deletions, and kept over a restart."""

from __future__ import annotations

import shutil
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from rvs.cli.embedded import EmbeddedSettings
from rvs.cli.main import main
from rvs.v1 import rvs_pb2 as pb
from rvs.v1 import rvs_pb2_grpc

from conftest import error_reason, lfw
from corpus import BUSH, POWELL, RUMSFELD, search, segments
from embedded_app import Running, corpus_env, start, wait_done
from recorder import wait_for

pytestmark = pytest.mark.e2e

# Rumsfeld three times: a new person needs three faces (rvs.core.clustering).
EXTRA = {
    "bush_2.jpg": (BUSH, 2),
    "bush_5.jpg": (BUSH, 5),
    "rumsfeld_2.jpg": (RUMSFELD, 2),
    "rumsfeld_3.jpg": (RUMSFELD, 3),
}


def answers(stub: rvs_pb2_grpc.SearchServiceStub) -> dict[str, set[str]]:
    """person id -> the file names of its photos and videos."""
    people = stub.ListPeople(pb.ListPeopleRequest(page_size=1000)).people
    return {
        p.person_id: {Path(m.uri).name for m in [*a.images, *a.videos]}
        for p in people
        if (a := stub.GetPerson(pb.GetPersonRequest(person_id=p.person_id)).answer)
    }


def person_with(stub: rvs_pb2_grpc.SearchServiceStub, name: str, timeout_s: float = 60) -> str:
    """The person whose media include `name`, once clustering has placed it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [p for p, media in answers(stub).items() if name in media]
        if found:
            return found[0]
        time.sleep(0.3)
    raise AssertionError(f"no person with {name} after {timeout_s} s: {answers(stub)}")


def wait_clustered(r: Running, timeout_s: float = 60) -> None:
    """Until the people job has clustered every finished medium (it takes them a batch at a time:
    a person found in one batch can still gain the next batch's media)."""
    catalog = r.app.catalog
    wait_for(lambda: bool(m := catalog.clustered_model()) and not catalog.unclustered_media(m, 1), timeout_s)


def cli(capsys: pytest.CaptureFixture[str], port: int, *argv: str) -> tuple[int, str, str]:
    """`rvs ARGV...` against the running service: exit status, stdout, stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main([*argv, "--target", f"127.0.0.1:{port}"])
    out = capsys.readouterr()
    return int(done.value.code or 0), out.out, out.err


def rpc_error(call: object, request: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call(request, timeout=30)  # type: ignore[operator]
    return err.value.code(), error_reason(err.value)


def test_people_found_named_searched_merged_split_and_kept(
    tmp_path_factory: pytest.TempPathFactory, milvus_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    s, watch = corpus_env(tmp_path_factory, milvus_uri, "people")
    for name, (person, n) in EXTRA.items():
        shutil.copy(lfw(person, n), watch / name)
    # sface+yunet, the model people are measured with (rvs eval people): dlib-resnet's bar keeps
    # Bush's clip_b track (another photo of him) apart from the rest of him.
    sface = {"model": "sface", "detector": "yunet"}
    s = EmbeddedSettings(
        sampler=s.sampler,
        embedder=s.embedder.model_copy(update=sface),
        query=s.query.model_copy(update={**sface, "people_interval_s": 0.2}),
    )
    r = start(s, watch)
    try:
        stub = r.stub
        wait_done(stub, expected=6 + len(EXTRA))
        wait_clustered(r)
        bush = person_with(stub, "clip_a.mp4")
        # Bush's two tracks (two different photos of him) and his two photos are one person.
        assert answers(stub)[bush] == {"clip_a.mp4", "clip_b.mp4", "bush_2.jpg", "bush_5.jpg"}
        got = stub.GetPerson(pb.GetPersonRequest(person_id=bush))
        assert segments(got.answer) == {"clip_a.mp4": [(1000, 4000)], "clip_b.mp4": [(2000, 6000)]}
        assert got.person.units == 4 and got.person.media_count == 4 and got.person.faces == 3 + 4 + 2
        assert got.person.face_id and got.person.box.x2 > got.person.box.x1
        assert got.answer.min_score == search(stub, lfw(BUSH, 10)).min_score  # the model's threshold
        assert all(0 < g.matching_samples <= g.samples for v in got.answer.videos for g in v.segments)
        rumsfeld = person_with(stub, "rumsfeld.jpg")
        assert answers(stub)[rumsfeld] == {"rumsfeld.jpg", "rumsfeld_2.jpg", "rumsfeld_3.jpg"}
        listed = stub.ListPeople(pb.ListPeopleRequest())
        assert listed.people[0].person_id == bush  # most faces first
        assert listed.total == len(listed.people) >= 2

        # Named once, found by name without a photo: the same answer as a search with a photo of him.
        named = stub.UpdatePerson(pb.UpdatePersonRequest(person_id=bush, name="George W. Bush"))
        assert named.name == "George W. Bush"
        by_name = stub.Search(pb.SearchRequest(person_name="george w. bush"), timeout=60)
        assert segments(by_name) == segments(search(stub, lfw(BUSH, 10)))
        assert {i.uri.rsplit("/", 1)[-1] for i in by_name.images} >= {"bush_2.jpg", "bush_5.jpg"}
        assert stub.ListPeople(pb.ListPeopleRequest(named_only=True)).people[0].person_id == bush
        assert rpc_error(stub.UpdatePerson, pb.UpdatePersonRequest(person_id=rumsfeld, name="GEORGE w. bush")) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "NAME_TAKEN",
        )
        assert rpc_error(stub.UpdatePerson, pb.UpdatePersonRequest(person_id=rumsfeld, name="a\x00b")) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_NAME",
        )
        assert rpc_error(stub.Search, pb.SearchRequest(person_name="Nobody")) == (
            grpc.StatusCode.NOT_FOUND,
            "PERSON_NOT_FOUND",
        )
        # The same from the command line.
        port = r.app.query.port  # type: ignore[union-attr]
        code, out, _ = cli(capsys, port, "people")
        assert code == 0 and f"{bush}  George W. Bush: 9 face(s) in 4 photo(s)/video(s)" in out
        code, out, _ = cli(capsys, port, "search", "--person", "GEORGE W. BUSH")
        assert code == 0 and "clip_a.mp4" in out and "bush_2.jpg" in out
        code, _, err = cli(capsys, port, "people", "name", rumsfeld, "George W. Bush")
        assert code == 1 and "NAME_TAKEN" in err
        assert cli(capsys, port, "people", "show")[0] == 2  # no person given
        unknown = "person-" + "0" * 16
        assert rpc_error(stub.GetPerson, pb.GetPersonRequest(person_id=unknown))[1] == "PERSON_NOT_FOUND"
        assert rpc_error(stub.GetPerson, pb.GetPersonRequest(person_id="x"))[1] == "INVALID_PARAMETER"

        # Merged (wrongly), then split again by moving Rumsfeld's photos to a new, named person.
        merged = stub.MergePeople(pb.MergePeopleRequest(into=bush, people=[rumsfeld]))
        assert merged.person_id == bush and merged.name == "George W. Bush" and merged.media_count == 7
        photos = [i.face_id for i in stub.GetPerson(pb.GetPersonRequest(person_id=bush)).answer.images]
        rumsfelds = [f for f in photos if f in {i.face_id for i in search(stub, lfw(RUMSFELD, 5)).images}]
        assert len(rumsfelds) == 3
        split = stub.MoveToPerson(pb.MoveToPersonRequest(unit_ids=rumsfelds, name="Donald Rumsfeld"))
        assert split.name == "Donald Rumsfeld" and split.units == 3
        assert answers(stub)[bush] == {"clip_a.mp4", "clip_b.mp4", "bush_2.jpg", "bush_5.jpg"}

        # "This is Colin Powell" from a search result: any face of the segment stands for its track.
        segment = search(stub, lfw(POWELL, 5)).videos[0].segments[0]
        powell = stub.MoveToPerson(pb.MoveToPersonRequest(unit_ids=[segment.best_face_id], name="Colin Powell"))
        assert answers(stub)[powell.person_id] >= {"clip_b.mp4"}
        again = stub.MoveToPerson(pb.MoveToPersonRequest(unit_ids=[segment.track_id], name="colin powell"))
        assert again.person_id == powell.person_id  # the name's person, not a second one
        assert rpc_error(stub.MoveToPerson, pb.MoveToPersonRequest(unit_ids=["f" * 64 + ":0:0"], person_id=bush)) == (
            grpc.StatusCode.NOT_FOUND,
            "FACE_NOT_FOUND",
        )

        # A deleted photo leaves its person.
        bush_5 = next(m for m in stub.ListMedia(pb.ListMediaRequest()).media if m.uri.endswith("bush_5.jpg"))
        stub.DeleteMedia(pb.DeleteMediaRequest(media_id=bush_5.media_id))
        assert "bush_5.jpg" not in answers(stub)[bush]
        metrics = urllib.request.urlopen(r.metrics_url, timeout=10).read().decode()
        assert 'rvs_people_units_total{outcome="joined"}' in metrics
        before = answers(stub)
    finally:
        r.channel.close()
        r.app.stop()

    # Restarted: the same people, names and placements; nothing clustered twice.
    r = start(s, watch)
    try:
        time.sleep(2.0)  # a few clustering passes
        assert answers(r.stub) == before
        names = {p.name for p in r.stub.ListPeople(pb.ListPeopleRequest(named_only=True)).people}
        assert names == {"George W. Bush", "Donald Rumsfeld", "Colin Powell"}
    finally:
        r.channel.close()
        r.app.stop()
