"""`rvs-sampler` (and `rvs sampler`): watch a folder, bucket or live streams, publish sampled frames to
Kafka (distributed mode)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rvs.core.lifecycle import service_main, service_parser
from rvs.sampler.config import SamplerSettings

DESCRIPTION = "watch a folder, bucket or live streams, publish sampled frames to Kafka (distributed mode)"


def add_stream_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stream",
        dest="streams",
        action="append",
        metavar="NAME=URL",
        help="a live stream to watch (RTSP, RTMP, HLS, SRT), repeated for several (env: RVS_STREAMS)",
    )


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = service_parser("sampler", DESCRIPTION, SamplerSettings, add_help)
    parser.add_argument("--watch", dest="watch_dir", metavar="DIR", help="same as --watch-dir")
    add_stream_flag(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    from rvs.sampler.process import SamplerProcess  # the heavy imports, once the flags are good

    sys.exit(service_main("sampler", SamplerSettings, SamplerProcess, build_parser().parse_args(argv)))


if __name__ == "__main__":
    main()
