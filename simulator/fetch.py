"""Download the real public request traces, for users with internet access.

The repository ships only its own synthetic sample (``traces/azure.csv``): the public traces have
their own licences and sizes, so each user fetches them from their publisher. ``fetch_trace``
streams a file to a temporary name beside its destination, checks its sha256 where one is known,
and renames it into place, so an interrupted or corrupted download never leaves a file that
looks complete. Archives are unpacked with tarfile's ``data`` filter (no absolute paths, no
``..``, no links out of the folder) into a temporary folder first, then moved into place.

Only the standard library's urllib is used: no new dependency for a command run once.
"""

from __future__ import annotations

import hashlib
import http.client
import lzma
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from simulator.errors import FetchError

__all__ = ["TRACES", "FetchError", "RemoteTrace", "fetch_trace"]

_CHUNK_BYTES = 1 << 16
_TIMEOUT_S = 60.0
# Pinned so the sha256 below stays valid: Azure/AzurePublicDataset at the commit our copies came
# from (the LLM files have not changed there since they were published).
_AZURE_PUBLIC_DATASET_RAW = (
    "https://raw.githubusercontent.com/Azure/AzurePublicDataset/"
    "b469a113cedca53ddc3bdea71a143dc4b7d8700c/data"
)
_AZURE_FUNCTIONS_2019_BLOB = (
    "https://azurepublicdatasettraces.blob.core.windows.net/azurepublicdatasetv2/"
    "azurefunctions_dataset2019"
)


@dataclass(frozen=True)
class RemoteTrace:
    """One downloadable public trace: where it lives, how to check it, and its terms."""

    name: str
    base_url: str  # host + path prefix; ``fetch_trace(base_url=...)`` swaps it for a mirror
    filename: str
    sha256: str | None  # None: the publisher gives no checksum, so none is checked
    archive: bool  # a .tar.xz unpacked into the destination folder
    description: str
    license: str

    @property
    def url(self) -> str:
        return _join_url(self.base_url, self.filename)


TRACES: dict[str, RemoteTrace] = {
    trace.name: trace
    for trace in (
        RemoteTrace(
            name="azure-llm-code",
            base_url=_AZURE_PUBLIC_DATASET_RAW,
            filename="AzureLLMInferenceTrace_code.csv",
            sha256="54e9a6d2a4bd06ba1e060304b900abbc74cbea53de96506e60fe5bb4f2277fb6",
            archive=False,
            description="Azure LLM inference, code completion: 1 h, 8,819 requests "
                        "(TIMESTAMP,ContextTokens,GeneratedTokens), 320 kB",
            license='CC-BY 4.0; cite Patel et al., "Splitwise", ISCA 2024',
        ),
        RemoteTrace(
            name="azure-llm-conv",
            base_url=_AZURE_PUBLIC_DATASET_RAW,
            filename="AzureLLMInferenceTrace_conv.csv",
            sha256="2f1e5b666d4e3055fdbba98598ce2ec307767b9064e03e2fa46676dbcc7d0bf8",
            archive=False,
            description="Azure LLM inference, conversation: 1 h, 19,366 requests, 719 kB",
            license='CC-BY 4.0; cite Patel et al., "Splitwise", ISCA 2024',
        ),
        RemoteTrace(
            name="azure-functions-2019",
            base_url=_AZURE_FUNCTIONS_2019_BLOB,
            filename="azurefunctions-dataset2019.tar.xz",
            sha256=None,
            archive=True,
            description="Azure Functions 2019: 14 days of per-minute invocation counts per "
                        "function (invocations_per_function_md.anon.d01..d14.csv) plus duration "
                        "and memory summaries; the publisher gives no checksum",
            license='CC-BY 4.0; cite Shahrad et al., "Serverless in the Wild", USENIX ATC 2020',
        ),
    )
}


def fetch_trace(
    name: str, dest_dir: Path, *, base_url: str | None = None, progress: bool = True
) -> list[Path]:
    """Download public trace ``name`` (a key of :data:`TRACES`) into ``dest_dir``.

    Returns the files written: the CSV itself, or every regular file unpacked from an archive
    (the archive is deleted after unpacking). A CSV already present with the right sha256 is not
    downloaded again. ``base_url`` replaces the host and path prefix (a mirror, or a loopback
    server in tests); the file name is kept.

    Raises:
        ValueError: ``name`` is not in :data:`TRACES` (the message lists them).
        FetchError: HTTP or network failure, checksum mismatch (naming expected and got), a
            truncated download, or an archive that is corrupt or unsafe to unpack.
    """
    trace = _lookup(name)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    url = _join_url(base_url or trace.base_url, trace.filename)
    if not trace.archive:
        target = dest_dir / trace.filename
        if trace.sha256 is not None and target.is_file() and _sha256_of(target) == trace.sha256:
            return [target]
        _download(url, target, expected_sha256=trace.sha256, progress=progress, label=name)
        return [target]
    archive = dest_dir / trace.filename
    _download(url, archive, expected_sha256=trace.sha256, progress=progress, label=name)
    try:
        return _unpack_tar(url, archive, dest_dir)
    finally:
        archive.unlink(missing_ok=True)


def _lookup(name: str) -> RemoteTrace:
    try:
        return TRACES[name]
    except KeyError:
        raise ValueError(
            f"unknown trace {name!r}; choose one of {', '.join(sorted(TRACES))}"
        ) from None


def _join_url(base_url: str, filename: str) -> str:
    return f"{base_url.rstrip('/')}/{filename}"


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(
    url: str, target: Path, *, expected_sha256: str | None, progress: bool, label: str
) -> None:
    """Stream ``url`` to a temp file beside ``target``, verify, then rename it into place."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            got_sha256 = _stream(url, out, progress=progress, label=label)
        if expected_sha256 is not None and got_sha256 != expected_sha256:
            raise FetchError(
                url,
                f"sha256 mismatch: expected {expected_sha256}, got {got_sha256}; the file changed "
                f"upstream or was corrupted on the way, so {target} was not written",
            )
        if expected_sha256 is None and progress:
            tqdm.write(f"{label}: no published checksum; sha256 of the download is {got_sha256}",
                       file=sys.stderr)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _stream(url: str, out: BinaryIO, *, progress: bool, label: str) -> str:
    """Copy the response body to ``out``; returns its sha256. Network errors become FetchError."""
    request = urllib.request.Request(url, headers={"User-Agent": "libra-sim fetch-trace"})
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            expected_bytes = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=expected_bytes, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=label, disable=not progress) as bar:
                while chunk := response.read(_CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise FetchError(url, f"HTTP {exc.code} {exc.reason}; check the trace name and, if you "
                         "passed base_url, that the mirror has the file") from None
    except urllib.error.URLError as exc:
        raise FetchError(url, f"cannot connect ({exc.reason}); check the network, or pass "
                         "base_url= to use a mirror") from None
    except (http.client.HTTPException, OSError) as exc:  # reset, timeout, short read, disk full
        raise FetchError(url, f"download interrupted ({exc!r}); try again") from None
    if expected_bytes is not None and received != expected_bytes:
        raise FetchError(url, f"download ended early: got {received} of {expected_bytes} bytes; "
                         "try again")
    return digest.hexdigest()


def _unpack_tar(url: str, archive: Path, dest_dir: Path) -> list[Path]:
    """Unpack safely into a temp folder inside ``dest_dir``, then move the files into place."""
    staging = Path(tempfile.mkdtemp(dir=dest_dir, prefix=".unpack-"))
    try:
        try:
            with tarfile.open(archive, mode="r:*") as tar:
                _check_members(url, tar)
                if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
                    tar.extractall(staging, filter="data")
                else:  # pragma: no cover - older patch releases; members were checked above
                    tar.extractall(staging)
        except (tarfile.TarError, lzma.LZMAError, EOFError) as exc:
            raise FetchError(url, f"not a readable tar archive ({exc})") from None
        unpacked = sorted(p for p in staging.rglob("*") if p.is_file())
        if not unpacked:
            raise FetchError(url, "the archive holds no files")
        placed = []
        for source in unpacked:
            target = dest_dir / source.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
            placed.append(target)
        return placed
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_members(url: str, tar: tarfile.TarFile) -> None:
    """Refuse absolute paths, ``..`` and links: a trace archive has no reason to hold them."""
    for member in tar.getmembers():
        parts = Path(member.name).parts
        if member.name.startswith(("/", "\\")) or ".." in parts:
            raise FetchError(url, f"unsafe path in archive: {member.name!r}; refusing to unpack")
        if member.issym() or member.islnk():
            raise FetchError(url, f"link in archive: {member.name!r}; refusing to unpack")
