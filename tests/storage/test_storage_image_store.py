"""IMAGE_STORE: images in an S3 bucket (moto's S3 server on 127.0.0.1) or a folder, with sha256 checks as on disk."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_helpers import queue, rendered, request_params

from storage import CorruptImage, Store
from storage.images import FsspecImageStore, LocalImageStore, open_image_store

BUCKET = "imagine-test"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server in this process (its own thread) on a free loopback port; skipped where moto or s3fs is
    missing. Fake credentials: nothing leaves the machine."""
    server_module = pytest.importorskip("moto.server", reason="moto[server] is not installed (S3 tests)")
    pytest.importorskip("s3fs", reason="s3fs is not installed (S3 tests)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {key: os.environ.get(key) for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL",
                                                   "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_ENDPOINT_URL=endpoint,
                      AWS_DEFAULT_REGION="us-east-1")
    try:
        import boto3

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_image_store_urls() -> None:
    assert isinstance(open_image_store(None, Path("data")), LocalImageStore)
    assert open_image_store("file:///srv/images", Path("data")).url == "/srv/images"  # type: ignore[attr-defined]
    assert isinstance(open_image_store("/srv/images", Path("data")), LocalImageStore)
    assert isinstance(open_image_store("memory://imagine", Path("data")), FsspecImageStore)


async def test_images_round_trip_through_s3_with_checksums(s3_endpoint: str, tmp_path: Path) -> None:
    url = f"s3://{BUCKET}/run-{tmp_path.name}"
    store = await Store.open(None, tmp_path / "data", image_store=url)
    try:
        params = request_params()
        job = await queue(store)
        await store.mark_running(job.id)
        done = await store.mark_done(job.id, rendered(params), 1.0)
        assert len(done.images) == params["count"]
        # Nothing on the local disk but the database; the objects sit at the same id-derived paths.
        assert not (tmp_path / "data" / "images").exists()
        image = done.images[0]
        import boto3

        s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
        key = f"run-{tmp_path.name}/{image.path}"
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == await store.read_image(image)
        # A changed object is refused, as a changed file is.
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"not the png")
        with pytest.raises(CorruptImage):
            await store.read_image(image)
        # Deleting removes the objects; a missing one reads as CorruptImage.
        await store.delete_generation(job.id)
        with pytest.raises(CorruptImage):
            await store.read_image(done.images[1])
    finally:
        await store.close()


async def test_two_stores_on_one_bucket_see_each_others_images(s3_endpoint: str, tmp_path: Path) -> None:
    """Two machines (a worker writes, the gateway reads) share the database and the bucket, not a disk."""
    url = f"s3://{BUCKET}/shared-{tmp_path.name}"
    database = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    worker = await Store.open(database, tmp_path / "worker", image_store=url)
    gateway = await Store.open(database, tmp_path / "gateway", image_store=url)
    try:
        params = request_params(count=1)
        job = await queue(gateway, **{k: v for k, v in params.items() if k != "count"}, count=1)
        await worker.mark_running(job.id)
        done = await worker.mark_done(job.id, rendered(params), 1.0)
        record = await gateway.get(job.id)
        assert record is not None
        assert await gateway.read_image(record.images[0]) == await worker.read_image(done.images[0])
    finally:
        await worker.close()
        await gateway.close()
