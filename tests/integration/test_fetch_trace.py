"""fetch_trace against a real HTTP server on loopback, serving copies made at test time."""

from __future__ import annotations

import hashlib
import io
import shutil
import socket
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from simulator.fetch import TRACES, FetchError, fetch_trace
from simulator.traces import load_trace
from tests.helpers import serve_folder

pytestmark = pytest.mark.integration

LLM_CODE = "AzureLLMInferenceTrace_code.csv"
TARBALL = "azurefunctions-dataset2019.tar.xz"
DAY_FILE = "invocations_per_function_md.anon.d01.csv"


@dataclass
class Server:
    base_url: str
    root: Path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """An http.server on a free loopback port, serving tmp_path/served."""
    root = tmp_path / "served"
    root.mkdir()
    with serve_folder(root) as base_url:
        yield Server(base_url=f"{base_url}/data", root=root)


def serve(server: Server, name: str, data: bytes) -> None:
    folder = server.root / "data"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(data)


def tar_xz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.shared
def test_published_checksums_match_the_shared_copies(shared_traces: Path) -> None:
    for name, filename in [("azure-llm-code", LLM_CODE),
                           ("azure-llm-conv", "AzureLLMInferenceTrace_conv.csv")]:
        digest = hashlib.sha256((shared_traces / filename).read_bytes()).hexdigest()
        assert TRACES[name].sha256 == digest
        assert TRACES[name].url.endswith(f"/data/{filename}")
    assert TRACES["azure-functions-2019"].sha256 is None
    assert TRACES["azure-functions-2019"].url == (
        "https://azurepublicdatasettraces.blob.core.windows.net/azurepublicdatasetv2/"
        "azurefunctions_dataset2019/azurefunctions-dataset2019.tar.xz"
    )


@pytest.mark.shared
def test_downloads_and_verifies_an_llm_trace(
    shared_traces: Path, server: Server, tmp_path: Path
) -> None:
    original = (shared_traces / LLM_CODE).read_bytes()
    serve(server, LLM_CODE, original)
    dest = tmp_path / "dest"

    paths = fetch_trace("azure-llm-code", dest, base_url=server.base_url, progress=False)

    assert paths == [dest / LLM_CODE]
    assert paths[0].read_bytes() == original
    assert leftovers(dest) == [LLM_CODE]  # no temporary file left behind
    assert len(load_trace(paths[0])) == 8_819


@pytest.mark.shared
def test_a_verified_file_is_not_downloaded_again(
    shared_traces: Path, server: Server, tmp_path: Path
) -> None:
    serve(server, LLM_CODE, (shared_traces / LLM_CODE).read_bytes())
    dest = tmp_path / "dest"
    fetch_trace("azure-llm-code", dest, base_url=server.base_url, progress=False)

    # Nothing listens on this port: a second download would fail.
    again = fetch_trace("azure-llm-code", dest, base_url=f"http://127.0.0.1:{free_port()}",
                        progress=False)

    assert again == [dest / LLM_CODE]


@pytest.mark.shared
def test_checksum_mismatch_names_expected_and_got_and_writes_nothing(
    shared_traces: Path, server: Server, tmp_path: Path
) -> None:
    tampered = (shared_traces / LLM_CODE).read_bytes() + b"\r\n2023-11-16 19:15:00.0,1,1"
    serve(server, LLM_CODE, tampered)
    dest = tmp_path / "dest"

    with pytest.raises(FetchError) as excinfo:
        fetch_trace("azure-llm-code", dest, base_url=server.base_url, progress=False)

    message = str(excinfo.value)
    assert message.startswith(f"{server.base_url}/{LLM_CODE}: sha256 mismatch")
    assert f"expected {TRACES['azure-llm-code'].sha256}" in message
    assert f"got {hashlib.sha256(tampered).hexdigest()}" in message
    assert leftovers(dest) == []


def test_http_404_is_a_clear_fetch_error(server: Server, tmp_path: Path) -> None:
    with pytest.raises(FetchError) as excinfo:
        fetch_trace("azure-llm-conv", tmp_path / "dest", base_url=server.base_url,
                    progress=False)

    err = excinfo.value
    assert err.url == f"{server.base_url}/AzureLLMInferenceTrace_conv.csv"
    assert err.why.startswith("HTTP 404")
    assert leftovers(tmp_path / "dest") == []


def test_nothing_listening_is_a_clear_fetch_error(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="cannot connect"):
        fetch_trace("azure-llm-code", tmp_path, base_url=f"http://127.0.0.1:{free_port()}",
                    progress=False)


@pytest.mark.shared
def test_downloads_and_unpacks_the_functions_tarball(
    shared_traces: Path, server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    day = (shared_traces / "azure2019-500fn-8h" / "invocations.csv").read_bytes()
    durations = (shared_traces / "azure2019-500fn-8h" / "durations.csv").read_bytes()
    serve(server, TARBALL, tar_xz({DAY_FILE: day,
                                   "function_durations_percentiles.anon.d01.csv": durations}))
    dest = tmp_path / "dest"

    paths = fetch_trace("azure-functions-2019", dest, base_url=server.base_url, progress=True)

    assert paths == [dest / "function_durations_percentiles.anon.d01.csv", dest / DAY_FILE]
    assert (dest / DAY_FILE).read_bytes() == day
    assert TARBALL not in leftovers(dest)  # the archive is removed once unpacked
    assert len(leftovers(dest)) == 2
    assert len(load_trace(dest / DAY_FILE)) == 3_037_902
    assert "no published checksum; sha256 of the download is" in capsys.readouterr().err


def test_archive_with_a_path_out_of_the_folder_is_refused(server: Server, tmp_path: Path) -> None:
    serve(server, TARBALL, tar_xz({"../escaped.csv": b"x\n", "ok.csv": b"y\n"}))
    dest = tmp_path / "dest"

    with pytest.raises(FetchError, match=r"unsafe path in archive: '\.\./escaped\.csv'"):
        fetch_trace("azure-functions-2019", dest, base_url=server.base_url, progress=False)

    assert not (tmp_path / "escaped.csv").exists()
    assert leftovers(dest) == []


def test_corrupt_archive_is_a_clear_fetch_error(server: Server, tmp_path: Path) -> None:
    serve(server, TARBALL, b"\xfd7zXZ\x00 this is not really xz")
    dest = tmp_path / "dest"

    with pytest.raises(FetchError, match="not a readable tar archive"):
        fetch_trace("azure-functions-2019", dest, base_url=server.base_url, progress=False)

    assert leftovers(dest) == []


def test_unknown_name_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown trace 'azure-2023'; choose one of "
                                         "azure-functions-2019, azure-llm-code, azure-llm-conv"):
        fetch_trace("azure-2023", tmp_path)


def test_base_url_keeps_the_file_name(server: Server, tmp_path: Path) -> None:
    serve(server, TARBALL, tar_xz({"a/b.csv": b"HashOwner\n"}))

    paths = fetch_trace("azure-functions-2019", tmp_path / "d", base_url=server.base_url + "/",
                        progress=False)

    assert paths == [tmp_path / "d" / "a" / "b.csv"]
    shutil.rmtree(tmp_path / "d")
