"""Fetching archives: the mirror, downloads resumed after a cut and after an interruption, checksums."""

import io
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from mllm.data import DataError, prepare_shakespeare
from mllm.data.download import Source, download, fetch, md5sum

# ---- fetching: mirror, download, checksums ----------------------------------------------------

def test_mirror_missing_a_file_names_it_and_the_url(tmp_path):
    (tmp_path / "mirror").mkdir()
    with pytest.raises(DataError, match=r"has no .*tinyshakespeare/input.txt.*download it from https://"):
        prepare_shakespeare(tmp_path / "root", tmp_path / "mirror")


def test_mirror_that_is_not_a_folder(tmp_path):
    with pytest.raises(DataError, match="is not a folder; pass --data-mirror"):
        prepare_shakespeare(tmp_path / "root", tmp_path / "nowhere")


def test_wrong_checksum_in_mirror(tmp_path):
    (tmp_path / "m" / "tinyshakespeare").mkdir(parents=True)
    (tmp_path / "m" / "tinyshakespeare" / "input.txt").write_text("not shakespeare " * 100)
    with pytest.raises(DataError, match="wrong checksum"):
        prepare_shakespeare(tmp_path / "root", tmp_path / "m")


def test_no_network_and_no_mirror(tmp_path):
    source = Source("input.txt", "x", "http://127.0.0.1:9/input.txt")
    with pytest.raises(DataError, match=r"could not download http://127.0.0.1:9/input.txt.*--data-mirror"):
        fetch([source], None, tmp_path)
    assert not (tmp_path / "input.txt").exists()


class _RangeHandler(SimpleHTTPRequestHandler):
    """Serves files as real servers do for `Range: bytes=N-`: 206 with the rest, or 416 with
    `Content-Range: bytes */SIZE` when N is at or past the end. Records each request's Range header in
    `server.ranges`; with `server.cut_after` set, announces the full Content-Length but sends only that many
    bytes, then closes the connection (a transfer cut short)."""

    def log_message(self, *args):
        pass

    def send_head(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            return super().send_head()
        rng = self.headers.get("Range")
        self.server.ranges.append(rng)
        data = path.read_bytes()
        if rng:
            start = int(rng.split("=")[1].rstrip("-"))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            data = data[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()  # HTTP/1.0: the connection closes after the body, however short
        cut = self.server.cut_after
        return io.BytesIO(data if cut is None else data[:cut])


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_RangeHandler, directory=str(root)))
    httpd.ranges, httpd.cut_after = [], None
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield SimpleNamespace(root=root, url=f"http://127.0.0.1:{httpd.server_address[1]}", httpd=httpd)
    httpd.shutdown()
    httpd.server_close()


PAYLOAD = bytes(range(256)) * 1000


def _served_blob(server) -> Source:
    (server.root / "blob.bin").write_bytes(PAYLOAD)
    return Source("blob.bin", "x", f"{server.url}/blob.bin", md5sum(server.root / "blob.bin"))


def test_download_resumes_a_partial_file_and_checks_md5(server, tmp_path):
    source = _served_blob(server)
    dest = tmp_path / "dl" / "blob.bin"
    dest.parent.mkdir()
    dest.with_name("blob.bin.part").write_bytes(PAYLOAD[:100_000])  # an interrupted earlier download
    assert download(source, dest, timeout=5).read_bytes() == PAYLOAD
    assert not dest.with_name("blob.bin.part").exists()
    assert server.httpd.ranges == ["bytes=100000-"]

    bad = Source("blob.bin", "x", source.url, "0" * 32)
    with pytest.raises(DataError, match="wrong checksum"):
        download(bad, tmp_path / "dl2" / "blob.bin", timeout=5)
    assert not (tmp_path / "dl2" / "blob.bin").exists() and not (tmp_path / "dl2" / "blob.bin.part").exists()


def test_download_cut_short_resumes_and_keeps_the_part(server, tmp_path):
    source = _served_blob(server)
    dest = tmp_path / "dl" / "blob.bin"
    part = dest.with_name("blob.bin.part")
    server.httpd.cut_after = 100_000  # every response stops after 100,000 bytes
    with pytest.raises(DataError, match=r"cut short 2 times: 200,000 of 256,000 bytes\. Run the same command again"):
        download(source, dest, timeout=5, attempts=2)  # the second try resumed, and was cut too
    assert part.read_bytes() == PAYLOAD[:200_000] and not dest.exists()
    assert server.httpd.ranges == [None, "bytes=100000-"]
    server.httpd.ranges.clear()
    part.write_bytes(PAYLOAD[:50_000])
    assert download(source, dest, timeout=5).read_bytes() == PAYLOAD  # resumed twice within one call
    assert md5sum(dest) == source.md5 and not part.exists()
    assert server.httpd.ranges == ["bytes=50000-", "bytes=150000-", "bytes=250000-"]


@pytest.mark.parametrize("extra", [b"", b"junk"])
def test_download_finishes_a_complete_part(server, tmp_path, extra):
    # Interrupted after the last byte but before the rename: the range request starts at the end of the file
    # and the server answers 416. A part longer than the file (extra) is not this file's: start over.
    source = _served_blob(server)
    dest = tmp_path / "dl" / "blob.bin"
    dest.parent.mkdir()
    dest.with_name("blob.bin.part").write_bytes(PAYLOAD + extra)
    assert download(source, dest, timeout=5).read_bytes() == PAYLOAD
    assert not dest.with_name("blob.bin.part").exists()
    assert server.httpd.ranges == [f"bytes={len(PAYLOAD) + len(extra)}-"] + ([None] if extra else [])
