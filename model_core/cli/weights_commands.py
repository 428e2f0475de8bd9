"""The command line's ``weights`` subcommand: ``weights list`` and ``weights download NAME``."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from ..net.weight_sets import BASE_URL_ENV, NAMES, WEIGHT_SETS, weight_set


def add_weights(subparsers: Any) -> None:
    """The ``weights`` subcommand: list the pretrained weight sets, or download one."""
    p = subparsers.add_parser(
        "weights",
        help="list the pretrained weight sets, or download one",
        description="Pretrained weights for PRETRAINED. 'list' says what each set is, its licence and whether it is "
        "on disk; 'download NAME' fetches one into the folder training looks in (resumable, SHA-256 checked). "
        "HTTPS_PROXY, HTTP_PROXY and NO_PROXY apply.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="every weight set, and whether it is on disk").set_defaults(func=run_list)
    get = actions.add_parser("download", help="download a weight set (resumes a partial download)")
    get.add_argument("name", choices=NAMES, metavar="NAME", help=", ".join(NAMES))
    get.add_argument("--base-url", default=None, help="a mirror replacing scheme, host and folder of the URL (the "
                     f"file name stays); default: ${BASE_URL_ENV}, else the publisher's server")
    get.set_defaults(func=run_download)


def run_list(args: argparse.Namespace) -> int:
    """Run ``weights list``: one JSON record per set on stdout, one line each on stderr."""
    from .output import emit

    records = []
    for weights in WEIGHT_SETS:
        found = weights.find()
        logging.getLogger("scl_deeplab").info(weights.describe())
        records.append({
            "name": weights.name, "title": weights.title, "on_disk": found, "path": weights.path,
            "url": weights.url, "bands": weights.bands, "input": weights.input, "mean": list(weights.mean),
            "std": list(weights.std), "licence": weights.licence,
        })
    emit({"weights": records})
    return 0


def run_download(args: argparse.Namespace) -> int:
    """Run ``weights download NAME``: the file's path as JSON."""
    from ..errors import Canceled
    from ..net.download import download
    from ..progress import PrintProgress
    from .output import emit

    try:
        path = download(weight_set(args.name), base_url=args.base_url, progress=PrintProgress())
    except KeyboardInterrupt:
        raise Canceled(f"Interrupted. The partial file is kept: 'weights download {args.name}' resumes it.") from None
    emit({"name": args.name, "path": path})
    return 0
