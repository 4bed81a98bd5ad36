"""Download/extract helpers against a local HTTP server (no network access needed)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from litvision.datamodules.readers.cifar_download import CIFAR10_MD5, CIFAR10_URL, ensure_cifar10
from litvision.datamodules.readers.cifar_pickle import CIFAR10_DIRNAME, load_split
from litvision.utils import download as dl
from litvision.utils.download import (
    DownloadError,
    download_and_extract,
    download_url,
    extract_archive,
    md5sum,
)
from litvision.utils.errors import MissingDataError
from tests.helpers.fake_cifar import write_fake_cifar

TRUNCATED = "/truncated.tar.gz"


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves files from ``directory``; TRUNCATED announces the full size but sends half."""

    def do_GET(self) -> None:
        if self.path == TRUNCATED:
            body = (Path(self.directory) / "cifar.tar.gz").read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args) -> None:  # keep test output clean
        pass


def _tar_gz(src_dir: Path, arcname: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(src_dir, arcname=arcname)
    return buf.getvalue()


def _evil_tar(members: list[tuple[str, bytes | None, str | None]]) -> bytes:
    """Build a tar from (name, file_bytes, symlink_target); one of the last two is None."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tf.addfile(info)
            else:
                info.size = len(data or b"")
                tf.addfile(info, io.BytesIO(data or b""))
    return buf.getvalue()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(base_url, served_dir) of a ThreadingHTTPServer on 127.0.0.1 with a fake CIFAR tarball."""
    root = tmp_path_factory.mktemp("served")
    src = write_fake_cifar(root / "src", n_train_per_class=2, n_test_per_class=1)
    (root / "cifar.tar.gz").write_bytes(_tar_gz(src, CIFAR10_DIRNAME))
    (root / "evil.tar").write_bytes(
        _evil_tar([(f"{CIFAR10_DIRNAME}/ok.txt", b"fine", None), ("../../evil.txt", b"boom", None)])
    )
    handler = functools.partial(_Handler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_port_url() -> str:
    """URL on a local port that nothing listens on (connection refused, no network needed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _assert_empty(d: Path) -> None:
    assert not d.exists() or sorted(p.name for p in d.iterdir()) == []


def test_constants() -> None:
    assert CIFAR10_URL == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert CIFAR10_MD5 == "c58f30108f718f92721af3b95e74349a"
    assert issubclass(DownloadError, RuntimeError)


def test_md5sum(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    assert md5sum(tmp_path / "f") == "900150983cd24fb0d6963f7d28e17f72"


# -- download_url --------------------------------------------------------------


@pytest.mark.parametrize("progress", [False, True])
def test_download_url_ok(served, tmp_path: Path, progress: bool) -> None:
    base, root = served
    dest = tmp_path / "sub" / "a.tar.gz"
    md5 = _md5(root / "cifar.tar.gz")
    out = download_url(f"{base}/cifar.tar.gz", dest, md5=md5, chunk_size=1000, progress=progress)
    assert out == dest and dest.read_bytes() == (root / "cifar.tar.gz").read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["a.tar.gz"]


def test_download_url_md5_mismatch(served, tmp_path: Path) -> None:
    base, root = served
    with pytest.raises(DownloadError) as exc:
        download_url(f"{base}/cifar.tar.gz", tmp_path / "a.tar.gz", md5="0" * 32, progress=False)
    msg = str(exc.value)
    assert "expected " + "0" * 32 in msg and _md5(root / "cifar.tar.gz") in msg
    assert "dataset.data_dir" in msg and "etry" in msg
    _assert_empty(tmp_path)


def test_download_url_keyboard_interrupt_cleans_up(tmp_path: Path, monkeypatch) -> None:
    class _Resp(io.BytesIO):
        headers = {"Content-Length": "100"}

        def read(self, n: int = -1) -> bytes:
            if self.tell() >= 10:
                raise KeyboardInterrupt
            return super().read(10)

    monkeypatch.setattr(dl.urllib.request, "urlopen", lambda *a, **k: _Resp(b"x" * 100))
    with pytest.raises(KeyboardInterrupt):
        download_url("http://example.invalid/f", tmp_path / "f", progress=False)
    _assert_empty(tmp_path)


# -- download_and_extract ------------------------------------------------------


def test_download_and_extract_success(served, tmp_path: Path) -> None:
    base, root = served
    data_dir = tmp_path / "data"
    md5 = _md5(root / "cifar.tar.gz")
    out = download_and_extract(f"{base}/cifar.tar.gz", data_dir, md5, CIFAR10_DIRNAME, progress=False)
    assert out == data_dir / CIFAR10_DIRNAME
    assert [p.name for p in data_dir.iterdir()] == [CIFAR10_DIRNAME]  # archive and temp dirs gone
    x, y = load_split(data_dir, train=True)
    assert x.shape == (20, 32, 32, 3) and np.bincount(y).tolist() == [2] * 10
    # Present now: a second call must not touch the network (this URL would fail).
    bogus = "http://127.0.0.1:1/nothing.tar.gz"
    assert download_and_extract(bogus, data_dir, "0" * 32, CIFAR10_DIRNAME) == out


def test_download_and_extract_reuses_verified_archive(served, tmp_path: Path, closed_port_url: str) -> None:
    _, root = served
    (tmp_path / "cifar.tar.gz").write_bytes((root / "cifar.tar.gz").read_bytes())
    url = closed_port_url.replace("cifar-10-python.tar.gz", "cifar.tar.gz")
    download_and_extract(url, tmp_path, _md5(root / "cifar.tar.gz"), CIFAR10_DIRNAME, progress=False)
    assert (tmp_path / CIFAR10_DIRNAME / "test_batch").is_file()
    assert (tmp_path / "cifar.tar.gz").is_file()  # the user's own file is kept


def test_download_and_extract_md5_mismatch_leaves_nothing(served, tmp_path: Path) -> None:
    base, _ = served
    with pytest.raises(DownloadError, match="MD5 mismatch"):
        download_and_extract(f"{base}/cifar.tar.gz", tmp_path, "f" * 32, CIFAR10_DIRNAME, progress=False)
    _assert_empty(tmp_path)


def test_download_and_extract_404_leaves_nothing(served, tmp_path: Path) -> None:
    base, _ = served
    with pytest.raises(DownloadError, match="404"):
        download_and_extract(f"{base}/missing.tar.gz", tmp_path, None, CIFAR10_DIRNAME, progress=False)
    _assert_empty(tmp_path)


def test_download_and_extract_truncated_stream_leaves_nothing(served, tmp_path: Path) -> None:
    base, _ = served
    with pytest.raises(DownloadError, match="cut off|ncomplete"):
        # No MD5: the length check alone must catch the short body.
        download_and_extract(f"{base}{TRUNCATED}", tmp_path, None, CIFAR10_DIRNAME, progress=False)
    _assert_empty(tmp_path)


def test_download_and_extract_malicious_tar_leaves_nothing(served, tmp_path: Path) -> None:
    base, root = served
    data_dir = tmp_path / "a" / "b"
    with pytest.raises(DownloadError, match="extract"):
        download_and_extract(f"{base}/evil.tar", data_dir, _md5(root / "evil.tar"), CIFAR10_DIRNAME, progress=False)
    _assert_empty(data_dir)
    assert not list(tmp_path.rglob("evil.txt"))
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "a" / "evil.txt").exists()


def test_download_and_extract_wrong_content_leaves_nothing(served, tmp_path: Path) -> None:
    base, root = served
    with pytest.raises(DownloadError, match="expected folder 'other-name'"):
        download_and_extract(f"{base}/cifar.tar.gz", tmp_path, None, "other-name", progress=False)
    _assert_empty(tmp_path)


# -- extract_archive -------------------------------------------------------------


@pytest.mark.parametrize(
    "members",
    [
        [("../evil.txt", b"x", None)],
        [("top/ok.txt", b"ok", None), ("top/../../evil.txt", b"x", None)],
        [("top/link", None, "/etc/passwd")],
        [("top/link", None, "../../evil.txt")],
    ],
    ids=["dotdot", "dotdot-after-good", "abs-symlink", "escaping-symlink"],
)
def test_extract_archive_rejects_unsafe_tar(tmp_path: Path, members) -> None:
    archive = tmp_path / "bad.tar"
    archive.write_bytes(_evil_tar(members))
    dest = tmp_path / "out" / "inner"
    with pytest.raises(DownloadError):
        extract_archive(archive, dest)
    _assert_empty(dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar", "out"]


def test_extract_archive_rejects_device_member(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("top/dev")
        info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
        tf.addfile(info)
    (tmp_path / "dev.tar").write_bytes(buf.getvalue())
    with pytest.raises(DownloadError):
        extract_archive(tmp_path / "dev.tar", tmp_path / "out")
    _assert_empty(tmp_path / "out")


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz", "w"])
def test_extract_archive_tar_formats(tmp_path: Path, mode: str) -> None:
    (tmp_path / "src" / "top").mkdir(parents=True)
    (tmp_path / "src" / "top" / "f.txt").write_text("hello")
    with tarfile.open(tmp_path / "a.tar", mode) as tf:
        tf.add(tmp_path / "src" / "top", arcname="top")
    assert extract_archive(tmp_path / "a.tar", tmp_path / "out") == [tmp_path / "out" / "top"]
    assert (tmp_path / "out" / "top" / "f.txt").read_text() == "hello"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["top"]


def test_extract_archive_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "a.tar").write_bytes(_evil_tar([("top/f.txt", b"new", None)]))
    (tmp_path / "out" / "top").mkdir(parents=True)
    (tmp_path / "out" / "top" / "f.txt").write_text("mine")
    with pytest.raises(DownloadError, match="overwrite"):
        extract_archive(tmp_path / "a.tar", tmp_path / "out")
    assert (tmp_path / "out" / "top" / "f.txt").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["top"]


def test_extract_archive_rolls_back_partial_move(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "a.tar").write_bytes(_evil_tar([("one/f", b"1", None), ("two/f", b"2", None)]))
    real_replace, calls = dl.os.replace, []

    def flaky_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(dl.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="disk full"):
        extract_archive(tmp_path / "a.tar", tmp_path / "out")
    _assert_empty(tmp_path / "out")


def test_extract_archive_zip(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "ok.zip", "w") as zf:
        zf.writestr("top/f.txt", "hi")
    assert extract_archive(tmp_path / "ok.zip", tmp_path / "out") == [tmp_path / "out" / "top"]
    assert (tmp_path / "out" / "top" / "f.txt").read_text() == "hi"

    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zf:
        zf.writestr("top2/ok.txt", "fine")
        zf.writestr("../evil.txt", "boom")
    with pytest.raises(DownloadError, match="unsafe path"):
        extract_archive(tmp_path / "bad.zip", tmp_path / "out2")
    _assert_empty(tmp_path / "out2")
    assert not (tmp_path / "evil.txt").exists()


def test_extract_archive_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_bytes(b"definitely not an archive" * 10)
    with pytest.raises(DownloadError, match="not a tar or zip"):
        extract_archive(tmp_path / "x.bin", tmp_path / "out")
    _assert_empty(tmp_path / "out")


# -- ensure_cifar10 ---------------------------------------------------------------


def test_ensure_cifar10_unreachable_names_layout_and_override(tmp_path: Path, closed_port_url: str) -> None:
    # a MissingDataError (a user error: entry scripts print it as one line), naming the override that fixes it
    with pytest.raises(MissingDataError) as exc:
        ensure_cifar10(tmp_path / "data", url=closed_port_url, progress=False)
    msg = str(exc.value)
    assert "dataset.data_dir=PATH" in msg and "cifar-10-batches-py" in msg and closed_port_url in msg
    assert "\n" not in msg and "Connection refused" in msg
    _assert_empty(tmp_path / "data")


def test_ensure_cifar10_download_disabled(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dataset.data_dir=PATH"):
        ensure_cifar10(tmp_path, download=False)
    _assert_empty(tmp_path)


def test_ensure_cifar10_downloads(served, tmp_path: Path) -> None:
    base, root = served
    md5 = _md5(root / "cifar.tar.gz")
    out = ensure_cifar10(tmp_path, url=f"{base}/cifar.tar.gz", md5=md5, progress=False)
    assert out == tmp_path / CIFAR10_DIRNAME
    assert load_split(tmp_path, train=False)[0].shape == (10, 32, 32, 3)


def test_ensure_cifar10_uses_user_folder_without_md5(tmp_path: Path, closed_port_url: str) -> None:
    """A user's subset differs from the official archive; it must be used, not re-downloaded."""
    write_fake_cifar(tmp_path, n_train_per_class=1, n_test_per_class=1, seed=5)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / CIFAR10_DIRNAME).iterdir()}
    for data_dir in (tmp_path, tmp_path / CIFAR10_DIRNAME):  # data_dir or the batches folder itself
        assert ensure_cifar10(data_dir, url=closed_port_url, md5="0" * 32) == tmp_path / CIFAR10_DIRNAME
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / CIFAR10_DIRNAME).iterdir()} == before


def test_ensure_cifar10_incomplete_folder_is_not_downloaded_over(tmp_path: Path, closed_port_url: str) -> None:
    cdir = write_fake_cifar(tmp_path, n_train_per_class=1, n_test_per_class=1)
    (cdir / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match="test_batch"):
        ensure_cifar10(tmp_path, url=closed_port_url)
