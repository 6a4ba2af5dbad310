"""Where image files live: IMAGE_STORE, a URL through fsspec (a local folder by default).

- unset, a folder path or `file://...`: files on this machine, today's layout under the data directory,
  written to a temp file in the same folder, fsynced and renamed (files.write_atomic);
- `s3://bucket/prefix` (or any fsspec URL, e.g. `gs://`, `memory://`): one object per image; an object
  store's PUT replaces the whole object or nothing, so a reader never sees a torn PNG. Credentials and
  endpoint come from the usual variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL for
  S3-compatible stores such as MinIO) or ~/.aws.

Paths are the same relative, id-derived paths as files.py (`images/<id // 1000>/<id>-<index>.png`), and every
read checks the recorded sha256 (CorruptImage). All methods block: the Store runs them in a worker thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from . import files
from .files import CorruptImage


class ImageStore(Protocol):
    url: str

    def write(self, relative: str, data: bytes) -> None: ...

    def read_checked(self, relative: str, expected_sha256: str) -> bytes: ...

    def remove(self, relatives: list[str]) -> None: ...


class LocalImageStore:
    """A folder on this machine (the data directory by default)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def write(self, relative: str, data: bytes) -> None:
        files.write_atomic(self.root, relative, data)

    def read_checked(self, relative: str, expected_sha256: str) -> bytes:
        return files.read_checked(self.root, relative, expected_sha256)

    def remove(self, relatives: list[str]) -> None:
        files.remove_files(self.root, relatives)


class FsspecImageStore:
    """Any fsspec filesystem (S3 and S3-compatible stores through s3fs)."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        import fsspec

        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url, **storage_options)
        self.root = root.rstrip("/")

    def _path(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def write(self, relative: str, data: bytes) -> None:
        self.fs.pipe_file(self._path(relative), data)  # one PUT: the whole object or nothing

    def read_checked(self, relative: str, expected_sha256: str) -> bytes:
        try:
            data = self.fs.cat_file(self._path(relative))
        except FileNotFoundError as exc:
            raise CorruptImage(f"image file is missing: {relative}") from exc
        if files.sha256_hex(data) != expected_sha256:
            raise CorruptImage(f"image file does not match its recorded sha256: {relative}")
        return bytes(data)

    def remove(self, relatives: list[str]) -> None:
        for relative in relatives:
            try:
                self.fs.rm_file(self._path(relative))
            except FileNotFoundError:
                pass


def open_image_store(url: str | None, data_dir: Path) -> ImageStore:
    """IMAGE_STORE as an ImageStore: None/empty = the data directory; a path or file:// URL = that folder."""
    if not url:
        return LocalImageStore(data_dir)
    if url.startswith("file://"):
        return LocalImageStore(Path(url[len("file://"):]))
    if "://" not in url:
        return LocalImageStore(Path(url))
    return FsspecImageStore(url)
