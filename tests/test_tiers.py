"""The fast tier keeps to itself (conftest.py): a test not marked slow can read nothing from ../shared/
and load no face model, whether or not the data and the models are on this machine."""

from __future__ import annotations

import pytest

from rvs.core.config import ModelSettings
from rvs.core.faces.pipeline import FacePipeline

from conftest import lfw, shared


def test_a_fast_test_cannot_read_the_shared_data() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"test_tiers.py::.* reads .*: only slow tests read \.\./shared/"):
        shared("faces", "lfw")
    with pytest.raises(pytest.fail.Exception, match="only slow tests"):
        lfw("Tony_Blair", 1)


def test_a_fast_test_has_no_model_files_and_cannot_load_a_model() -> None:
    settings = ModelSettings(model="dlib-resnet", detector="mtcnn")
    assert not settings.models_dir.exists()
    with pytest.raises(pytest.fail.Exception, match="loads a face model: mark it slow"):
        FacePipeline(settings).load()


@pytest.mark.slow
def test_a_slow_test_reads_the_shared_data() -> None:
    assert lfw("Tony_Blair", 1).is_file()
