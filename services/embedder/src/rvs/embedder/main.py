"""`rvs-embedder` (and `rvs embedder`): embed the faces in frames from Kafka into Milvus (distributed mode)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rvs.core.lifecycle import service_main, service_parser
from rvs.embedder.config import EmbedderSettings

DESCRIPTION = "embed the faces in frames from Kafka into Milvus (distributed mode; run several)"


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = service_parser("embedder", DESCRIPTION, EmbedderSettings, add_help)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    from rvs.embedder.process import EmbedderProcess  # the heavy imports, once the flags are good

    sys.exit(service_main("embedder", EmbedderSettings, EmbedderProcess, build_parser().parse_args(argv)))


if __name__ == "__main__":
    main()
