"""The S3 server stops while `render_video` uploads its outputs: the render is retried and the job completes."""

import io
import logging
import threading
import time
from pathlib import Path

import av
import httpx
import pytest

from core.storage import ObjectStore
from tests.conftest import astronaut_png, wait_for_status
from tests.faults.conftest import Server, artifact_rows
from tests.helpers import storage_settings

pytestmark = pytest.mark.integration

logger = logging.getLogger(__name__)


class OutageDuringUpload(ObjectStore):
    """The GPU worker's store: S3 stops just before the `nth` upload and restarts once that upload failed."""

    def __init__(self, s3: Server, nth: int) -> None:
        super().__init__(storage_settings(s3.service))
        self._s3 = s3
        self._nth = nth
        self._calls = 0
        self._lock = threading.Lock()
        self.restarted = threading.Event()
        self.down_seconds = 0.0

    def put_file(
        self, bucket: str, key: str, path: Path, content_type: str = "application/octet-stream"
    ) -> tuple[str, int]:
        with self._lock:
            self._calls += 1
            call = self._calls
        if call < self._nth:
            return super().put_file(bucket, key, path, content_type)
        if call > self._nth:  # the retry: the outage is over before it uploads (S3 takes ~1 s to start)
            assert self.restarted.wait(60), "S3 did not come back"
            return super().put_file(bucket, key, path, content_type)
        self._s3.stop()
        stopped = time.monotonic()
        try:
            return super().put_file(bucket, key, path, content_type)  # minio retries, then raises
        finally:
            threading.Thread(target=self._restart, args=(stopped,), daemon=True).start()

    def _restart(self, stopped: float) -> None:
        self._s3.restart()
        self.down_seconds = time.monotonic() - stopped
        self.restarted.set()


async def test_render_upload_survives_an_s3_restart(private_server, fault_stack, tmp_path) -> None:
    s3 = private_server("s3")
    gpu_store = OutageDuringUpload(s3, nth=2)  # the video is stored, the thumbnail upload hits the outage
    async with fault_stack(s3=s3, gpu_store=gpu_store) as stack, httpx.AsyncClient() as http:
        face = astronaut_png(tmp_path / "face.png").read_bytes()
        upload = await stack.api.post("/api/uploads", files=[("files", ("face.png", face))])
        assert upload.status_code == 201, upload.text
        body = {"topic": "why cats purr", "variant": "sadtalker", "portrait": upload.json()["data"][0]["uri"],
                "options": {"durationSeconds": 5, "resolution": "480p"}}  # fmt: skip
        response = await stack.api.post("/api/generate", json=body)
        assert response.status_code == 202, response.text
        job_id = response.json()["jobId"]
        status = await wait_for_status(stack.api, job_id, timeout=120)

        assert gpu_store.restarted.is_set(), "S3 was never stopped during the upload"
        logger.info("S3 was down for %.1f s", gpu_store.down_seconds)
        assert status["status"] == "completed", status
        render = next(n for n in status["nodes"] if n["id"] == "render")
        assert render["attempt"] == 2, render  # the failed upload failed the attempt; the retry uploaded all
        rows = await artifact_rows(stack.sessions, job_id)
        assert {r["kind"] for r in rows} >= {"video", "thumbnail", "audio", "scene"}, rows
        assert not any(r["partial"] for r in rows), rows
        missing = [r["uri"] for r in rows if not stack.store.exists(r["uri"])]
        assert not missing, f"artifact rows point at missing objects: {missing}"

        record = (await stack.api.get(f"/api/jobs/{job_id}")).json()
        mp4 = (await http.get(record["video"]["url"])).raise_for_status().content
        with av.open(io.BytesIO(mp4)) as container:
            assert container.streams.video[0].codec_context.name == "h264"
