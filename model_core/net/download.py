"""Downloading a weight set on request: in pieces, resumable, verified, never half-written.

The file arrives as ``<name>.part`` beside its final place, one HTTP range
request (``CHUNK_BYTES``) at a time, so progress and cancel work between pieces
and a cut connection costs at most one piece: it is retried from where the file
ends, and a later run resumes the same ``.part``. Only once the SHA-256 matches
(torch hub's hash prefix in the file name, or the full hash the weight set pins)
is the file renamed into place; a file that does not match is deleted.

How bytes travel is a ``transport.Transport``: urllib on the command line and in
the worker, QGIS's network stack in the Processing algorithm. Torch-free.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from ..errors import Canceled, DownloadError, OutputError, WeightsHashError
from ..progress import SILENT, Progress
from .transport import Reply, Transport, TransportFailure, UrllibTransport, parse_content_range
from .weight_sets import BASE_URL_ENV, WeightSet, hash_prefix_of

CHUNK_BYTES = 4 * 1024 * 1024
RETRIES = 3  # tries again per piece after a cut connection, a timeout or a passing server error


def sha256_of(path: Path) -> str:
    """The file's SHA-256, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def expected_hash(path: Path, weights: WeightSet) -> str | None:
    """The SHA-256 (or its prefix) ``path`` must have: the pinned hash, or the prefix its own name carries."""
    if path.name.removesuffix(".part") == weights.file_name and weights.sha256:
        return weights.sha256
    return hash_prefix_of(path.name.removesuffix(".part"))


def matches(path: Path, weights: WeightSet) -> tuple[bool, str]:
    """(whether ``path`` holds the published file, its SHA-256)."""
    digest, expected = sha256_of(path), expected_hash(path, weights)
    return bool(expected) and digest.startswith(expected), digest  # type: ignore[arg-type]


def _mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.1f} MB"


def elsewhere(weights: WeightSet) -> str:
    """How to get the file without this download."""
    return (
        f"To get it another way, download {weights.url} on a computer that is online and copy it into "
        f"{weights.folder} under the name {weights.file_name}; or set BASE_URL (--base-url, {BASE_URL_ENV}) to a "
        "mirror that has it."
    )


def download(
    weights: WeightSet,
    *,
    base_url: str | None = None,
    transport: Transport | None = None,
    progress: Progress = SILENT,
    chunk_bytes: int = CHUNK_BYTES,
    retry_pause_s: float = 1.0,
) -> Path:
    """Download ``weights`` into their folder, unless a verified copy is there already; returns the file.

    Raises:
        DownloadError: offline, proxy refusal, HTTP error, or a connection cut more
            than ``RETRIES`` times in a row; a partial file stays for resuming.
        WeightsHashError: the complete file is not the published one; it is deleted.
        Canceled: the user stopped; the partial file stays for resuming.
        OutputError: the folder cannot be written.
    """
    url = weights.source_url(base_url)
    found = weights.find()
    if found and matches(found, weights)[0]:
        progress.info(f"{weights.name} is on disk already: {found}")
        progress.set_progress(100)
        return found
    if found:
        progress.warn(f"{found} is not the published {weights.name} file (its SHA-256 differs); downloading it again.")
    final = weights.path
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"Cannot create the weights folder {final.parent}: {exc.strerror}.") from exc
    part = final.with_name(final.name + ".part")
    _fetch(url, part, weights, transport or UrllibTransport(), progress, chunk_bytes, retry_pause_s)
    good, digest = matches(part, weights)
    if not good:
        part.unlink()
        raise WeightsHashError(
            f"The file downloaded from {url} is not the published {weights.file_name}: its SHA-256 is "
            f"{digest[:16]}..., expected {expected_hash(part, weights)}... (a damaged transfer, a proxy's error page "
            "or a mirror with another file). It was deleted. Download it again, or from another mirror. "
            + elsewhere(weights)
        )
    os.replace(part, final)
    progress.info(f"Downloaded and verified {weights.name}: {final}")
    progress.set_progress(100)
    return final


def _fetch(
    url: str,
    part: Path,
    weights: WeightSet,
    transport: Transport,
    progress: Progress,
    chunk_bytes: int,
    retry_pause_s: float,
) -> None:
    """Fill ``part`` with the whole file at ``url``, resuming from what it holds."""
    done = part.stat().st_size if part.is_file() else 0
    total: int | None = None
    if done:
        progress.info(f"Resuming {weights.file_name} from {_mb(done)} ({part}).")
    progress.info(f"Downloading {weights.name} from {url}")
    failures = 0
    while total is None or done < total:
        if progress.is_canceled():
            raise Canceled(_kept("Download canceled.", part, done, total, weights))
        try:
            reply = transport.get(url, done, done + chunk_bytes - 1)
            done, total = _take(reply, part, done)
        except TransportFailure as exc:
            if progress.is_canceled():
                raise Canceled(_kept("Download canceled.", part, done, total, weights)) from exc
            failures += 1
            if not exc.transient or failures > RETRIES:
                what = f"Downloading {weights.file_name} from {url} failed: {exc}."
                raise DownloadError(_kept(what, part, done, total, weights) + " " + elsewhere(weights)) from exc
            progress.info(f"{exc}; trying again from {_mb(done)} ({failures} of {RETRIES}).")
            time.sleep(retry_pause_s * failures)
            continue
        failures = 0
        if total:
            progress.set_progress(99 * done / total)


def _take(reply: Reply, part: Path, done: int) -> tuple[int, int | None]:
    """Write a reply's bytes into ``part``; returns (bytes now held, total size)."""
    first, last, total = parse_content_range(reply.content_range)
    if reply.status == 416:  # the range starts at or past the end: the partial file is complete, or too long
        if total is not None and done > total:
            part.unlink()
            return 0, None
        return done, done
    if reply.status == 200:  # the server ignores ranges and sent the whole file
        with open(part, "wb") as f:
            f.write(reply.body)
        return len(reply.body), len(reply.body)
    if reply.status != 206 or first != done or last is None:
        raise TransportFailure(f"the server answered HTTP {reply.status} with another part of the file", transient=True)
    if len(reply.body) != last - first + 1:
        raise TransportFailure("the connection was cut during the transfer", transient=True)
    with open(part, "ab") as f:
        f.write(reply.body)
    return done + len(reply.body), total


def _kept(what: str, part: Path, done: int, total: int | None, weights: WeightSet) -> str:
    if done and part.is_file():
        return (
            f"{what} The first {_mb(done)} of {_mb(total)} are kept in {part}; downloading {weights.name} again "
            "resumes from there."
        )
    return what
