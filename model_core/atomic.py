"""Write outputs so that a failure or a cancel never leaves a half-written file.

Everything is written to a temporary name beside the destination, then renamed
into place in one step once complete.
"""

from __future__ import annotations

import errno
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError, OutputError


def _check_parent(final: Path) -> None:
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"Cannot create the folder {parent}: {exc.strerror}. Choose another output path.") from exc
    if not os.access(parent, os.W_OK):
        raise OutputError(f"Cannot write to {parent}: permission denied. Choose another output path.")


def _disk_full(exc: BaseException | None) -> bool:
    """True when ``exc`` or an error it was raised from is "no space left" (or an exceeded quota)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def no_space_message(final: Path | str) -> str:
    """What to tell a user whose disk filled up while ``final`` was written."""
    final = Path(final)
    return (
        f"No space left on {final.parent} while writing {final.name}. Free some space or choose another folder; "
        "any earlier file of that name was kept."
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(final: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success it replaces ``final``.

    On any exception (a cancel included) the temporary file is removed and
    ``final`` is left as it was; a full disk becomes an ``OutputError`` saying
    so. Temporary files of ``final`` left by a killed run are removed first.
    """
    final = Path(final)
    _check_parent(final)
    remove_stale_parts(final)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".part{final.suffix}", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private; outputs get the usual permissions.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, final)
    except Exception as exc:
        if _disk_full(exc) and not isinstance(exc, OutputError):
            raise OutputError(no_space_message(final)) from exc
        raise
    finally:
        if tmp.exists():
            tmp.unlink()
        # GDAL may leave sidecars of the temporary name (.aux.xml, .ovr).
        for sidecar in final.parent.glob(tmp.name + ".*"):
            sidecar.unlink(missing_ok=True)


def final_path(path: Path | str) -> Path:
    """The output a temporary file of ``atomic_file`` stands for (``.a.x1.part.tif``: ``a.tif``), else ``path``."""
    path = Path(path)
    found = re.fullmatch(r"\.(.+)\.[^.]+\.part(\.[^.]*)?", path.name)
    return path.with_name(found.group(1) + (found.group(2) or "")) if found else path


def remove_stale_parts(final: Path | str) -> int:
    """Remove temporary files of ``final`` left by a killed process (a signal skips the clean-up above).

    Only call this while no other process is writing ``final``. Returns how many were removed.
    """
    final = Path(final)
    head, tail = f".{final.stem}.", f".part{final.suffix}"
    # mkstemp's random middle has no dot: ".m.last.x1.part.pt" belongs to m.last.pt, not to m.pt.
    stale = [
        path for path in final.parent.glob(f"{glob.escape(head)}*{glob.escape(tail)}*")
        if tail in path.name[len(head):] and "." not in path.name[len(head):].split(tail, 1)[0]
    ]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


@contextmanager
def atomic_folder(final: Path | str, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; on success it becomes ``final``.

    A ``final`` that exists and is not empty is refused unless ``overwrite``.
    """
    final = Path(final)
    if final.exists() and not final.is_dir():
        raise OutputError(f"{final} exists and is a file, not a folder. Choose another output folder.")
    if final.is_dir() and any(final.iterdir()) and not overwrite:
        raise OutputError(
            f"The output folder {final} is not empty. Choose an empty or new folder, or allow overwriting."
        )
    _check_parent(final)
    head = f".{final.name}."
    for stale in final.parent.glob(f"{glob.escape(head)}*.part"):
        if stale.is_dir() and "." not in stale.name[len(head) : -len(".part")]:
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed run
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        _swap_in(tmp, final)
    except Exception as exc:
        if _disk_full(exc) and not isinstance(exc, OutputError):
            raise OutputError(no_space_message(final)) from exc
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(tmp: Path, final: Path) -> None:
    """Put the finished folder ``tmp`` in place of ``final``; the old one is deleted only once the new one is in."""
    if not final.exists():
        os.replace(tmp, final)
        return
    old = tmp.with_name(tmp.name[: -len(".part")] + ".old")
    try:
        os.replace(final, old)
    except OSError as exc:
        raise OutputError(f"Cannot replace the folder {final}: {exc.strerror}. Choose another output folder.") from exc
    try:
        os.replace(tmp, final)
    except OSError as exc:
        os.replace(old, final)
        raise OutputError(f"Cannot replace the folder {final}: {exc.strerror}. Choose another output folder.") from exc
    shutil.rmtree(old, ignore_errors=True)


def check_replaceable(
    folder: Path | str, *, marker: str, is_ours: Callable[[Path], bool], own: Collection[str],
    inputs: Iterable[Path | str] = (),
) -> None:
    """Refuse to overwrite ``folder`` unless all it holds is a previous run's output.

    The folder is a previous run's when its ``marker`` file (e.g. ``index.json``)
    passes ``is_ours``; then the entries named in ``own`` are that run's. Anything
    else in it, and any of ``inputs`` inside it, raises ``OutputError`` listing a few.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    resolved = folder.resolve()
    inside = sorted(str(p) for p in (Path(i).resolve() for i in inputs) if p.is_relative_to(resolved))
    if inside:
        raise OutputError(
            f"The output folder {folder} holds this run's input {inside[0]}; overwriting it would delete it. "
            "Choose another output folder."
        )
    marker_path = folder / marker
    ours = tuple(own) if marker_path.is_file() and is_ours(marker_path) else ()
    # A sidecar of the run's own file (preview.png.aux.xml, written when QGIS opened it) is the run's too.
    foreign = sorted(
        p.name for p in folder.iterdir() if not any(p.name == o or p.name.startswith(f"{o}.") for o in ours)
    )
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputError(
            f"The output folder {folder} holds files that an earlier run did not write ({shown}); "
            "overwriting replaces only an earlier run's output. Choose an empty or new folder, or move those files."
        )


def refuse_overwriting_inputs(
    inputs: Mapping[str, str | Path | None], outputs: Mapping[str, str | Path | None]
) -> None:
    """Raise ``InputError`` when an output path is an input's, or another output's, before any work.

    Keys name the paths for the message (parameter or option names), values are paths (a
    layer's source is fine); empty values are skipped. Paths are compared resolved, so
    links, ".." and "~" do not hide a match.
    """

    def resolved(value: str | Path | None) -> Path | None:
        text = str(value or "").split("|", 1)[0].strip()  # a layer source may carry "|layername=..."
        return Path(text).expanduser().resolve() if text else None

    sources = [(name, resolved(path)) for name, path in inputs.items()]
    seen: list[tuple[str, Path | None]] = []
    for out_name, out_value in outputs.items():
        target = resolved(out_value)
        if target is None:
            continue
        for in_name, source in sources:
            if source == target:
                raise InputError(
                    f"The output {out_name} ({target}) is the input {in_name}: writing it would overwrite "
                    f"that input. Choose another path for {out_name}."
                )
        for other_name, other in seen:
            if other == target:
                raise InputError(
                    f"The outputs {other_name} and {out_name} are the same file ({target}); one would overwrite "
                    "the other. Choose different paths."
                )
        seen.append((out_name, target))
