"""`rvs-query` (and `rvs query`): the gRPC Search API and the search page (distributed mode)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rvs.core.lifecycle import service_main, service_parser
from rvs.query.config import QuerySettings

DESCRIPTION = "the gRPC Search API and the search page (distributed mode)"


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = service_parser("query", DESCRIPTION, QuerySettings, add_help)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    from rvs.query.process import QueryProcess  # the heavy imports, once the flags are good

    sys.exit(service_main("query", QuerySettings, QueryProcess, build_parser().parse_args(argv)))


if __name__ == "__main__":
    main()
