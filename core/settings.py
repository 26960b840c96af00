"""Settings for every process: one `Settings` tree read from `APP_*` variables and `.env`."""

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from schemas.names import CPU_TASK_QUEUE, GPU_TASK_QUEUE


class TemporalSettings(BaseModel):
    """Where the Temporal server is and which queues the planes poll."""

    address: str = "localhost:7233"
    namespace: str = "default"
    cpu_task_queue: str = CPU_TASK_QUEUE
    gpu_task_queue: str = GPU_TASK_QUEUE
    ui_url: str = "http://localhost:8233"


class DatabaseSettings(BaseModel):
    """PostgreSQL; the URL uses the psycopg 3 driver (`postgresql+psycopg://`)."""

    url: str = "postgresql+psycopg://postgres@localhost:5432/myspinbot"


class StorageSettings(BaseModel):
    """S3-compatible object storage (MinIO in production, SeaweedFS locally)."""

    endpoint: str = "localhost:8333"
    public_endpoint: str | None = None  # what a browser reaches; defaults to `endpoint`
    access_key: str = "myspinbot"
    secret_key: SecretStr = SecretStr("myspinbot-secret")
    secure: bool = False
    region: str = "us-east-1"
    presign_seconds: int = 3600


class LlmSettings(BaseModel):
    """The script writer: Ollama when a host is set, else the offline writer."""

    ollama_host: str | None = None
    model: str = "llama3.2"
    timeout_seconds: float = 60


class GpuSettings(BaseModel):
    """The GPU worker's runtimes and limits."""

    work_dir: Path = Path(".local/gpu-work")
    models_dir: Path | None = None
    max_duration_seconds: float = 120
    resolutions: list[str] = Field(default_factory=lambda: ["480p", "576p", "720p", "1080p"])
    max_concurrent_activities: int = 1
    heartbeat_throttle_seconds: float = 1.0
    shutdown_grace_seconds: float = 5  # on SIGTERM, then running activities are cancelled (training checkpoints)
    # Model backends (gpu_worker/backends/README.md): each is used and advertised only when configured.
    # Their weights live in `models_dir/<folder>/` as `python -m gpu_worker.models pull` puts them
    # (`stable-diffusion/`, `stable-video-diffusion/`, `esrgan/`, `wav2lip/`, `sadtalker/`, `coqui/`, `xtts/`,
    # `musetalk/`); the per-backend paths below override that layout. `backends`: the catalogue names to use
    # (`sd15,esrgan` or a JSON list); unset = every one whose files are present; `none` = embedded runtimes only.
    backends: Annotated[list[str] | None, NoDecode] = None
    sd_steps: int = 30
    sd_guidance_scale: float = 7.5
    sd_resolution: int = 512  # short side of the generated scene (multiples of 8)
    sd_negative_prompt: str = "text, watermark, logo, blurry, lowres, deformed"
    svd_num_frames: int = 14
    svd_fps: int = 7
    svd_motion_bucket_id: int = 127
    svd_decode_chunk_size: int = 8
    svd_steps: int = 25
    svd_resolution: int = 576  # short side of the generated clip (multiples of 64)
    model_cpu_offload: bool = False  # diffusers `enable_model_cpu_offload` for GPUs with little memory
    wav2lip_dir: Path | None = None  # a Wav2Lip checkout
    wav2lip_checkpoint: Path | None = None  # default `<models_dir>/wav2lip/wav2lip_gan.pth`, else in the checkout
    wav2lip_python: Path | None = None  # default `<dir>/.venv/bin/python`, else this interpreter
    wav2lip_args: list[str] = Field(default_factory=list)
    musetalk_dir: Path | None = None  # MuseTalk 1.5 (musetalkV15/, sd-vae/, whisper/); default `<models_dir>/musetalk`
    musetalk_batch_size: int = 8  # frames per UNet call (lower: less GPU memory)
    sadtalker_dir: Path | None = None  # a SadTalker checkout
    sadtalker_checkpoint_dir: Path | None = None  # default `<models_dir>/sadtalker/checkpoints`, else the checkout's
    sadtalker_python: Path | None = None
    sadtalker_args: list[str] = Field(default_factory=lambda: ["--still", "--preprocess", "full"])
    esrgan_weights: Path | None = None  # default `<models_dir>/esrgan/RealESRGAN_x4plus.pth`
    esrgan_tile: int = 512  # input tile size in pixels (0: whole frame at once)
    # Coqui TTS model (`config.json` + checkpoint); default `<models_dir>/coqui`. An XTTS v2 folder here works too.
    coqui_model_dir: Path | None = None
    coqui_speaker: str | None = None  # speaker of a multi-speaker model (default: its first)
    # XTTS v2 (`config.json` "model": "xtts", `model.pth`, `vocab.json`): clones profiles' voices; default
    # `<models_dir>/xtts`. Speech uses it rather than the Coqui model when both are there.
    xtts_model_dir: Path | None = None
    comfyui_url: str | None = None
    comfyui_checkpoint: str = "v1-5-pruned-emaonly.safetensors"
    backend_timeout_seconds: float = 1800  # per model call (subprocess, ComfyUI prompt)

    @field_validator("backends", mode="before")
    @classmethod
    def _backend_names(cls, value: object) -> object:
        """`APP_GPU__BACKENDS` as `sd15,esrgan`, a JSON list, or `none`; the names are checked by the worker."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        names = [name.strip() for name in text.split(",") if name.strip()]
        return [] if names == ["none"] else names


class CallbackSettings(BaseModel):
    """Completion callbacks: the HMAC-SHA256 signing secret (callbacks are refused without one)."""

    secret: SecretStr | None = None
    timeout_seconds: float = 10
    allow_private_hosts: bool = False  # let callbacks reach private/loopback addresses (same-network receivers)


class ApiSettings(BaseModel):
    """HTTP limits, sessions and retention."""

    max_upload_bytes: int = 50 * 1024 * 1024
    max_files_per_upload: int = 20
    max_concurrent_jobs: int = 4  # per user; more → 429 with Retry-After
    retry_after_seconds: int = 30
    max_presets: int = 50  # per user; more → 409
    max_video_seconds: float = 30  # an uploaded clip (options.media) may be at most this long
    max_batch_items: int = 20  # jobs in one `POST /api/batches`
    capabilities_cache_seconds: float = 5  # submissions plan against capabilities read at most this often
    status_followers: int = 1000  # jobs whose status one API process follows at once (least recently read evicted)
    session_hours: float = 12
    secure_cookies: bool = False  # set true behind HTTPS so the session cookie is `Secure`


class ReviewSettings(BaseModel):
    """Script review (`options.review`): how long a job waits for its person, and how many may wait."""

    timeout_hours: float = 24  # a job still waiting then ends cancelled ("review timed out")
    max_waiting: int = 20  # per user; more jobs waiting for review → 429


class RetentionSettings(BaseModel):
    """Personal data kept no longer than needed: uploads no profile uses are deleted after `upload_hours`."""

    upload_hours: float = 7 * 24
    sweep_every_minutes: float = 60  # the Temporal schedule `myspinbot-upload-retention`


class TelemetrySettings(BaseModel):
    """OpenTelemetry: OTLP/HTTP export when an endpoint is set; Prometheus text always on the API's `/metrics`."""

    otlp_endpoint: str | None = None  # e.g. http://otel-collector:4318 (`/v1/traces`, `/v1/metrics` appended)
    service_name: str = "myspinbot"
    metrics_port: int | None = None  # a worker's own `/metrics` HTTP port (off when unset)
    sdk_metrics_address: str | None = None  # Temporal SDK metrics (Prometheus) of a worker, e.g. 0.0.0.0:9464


class Settings(BaseSettings):
    """Every setting of every process; never printed or logged."""

    model_config = SettingsConfigDict(
        env_prefix="APP_",
        env_nested_delimiter="__",
        env_file=".env",
        env_ignore_empty=True,
        extra="ignore",
    )

    environment: str = "local"
    temporal: TemporalSettings = Field(default_factory=TemporalSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    llm: LlmSettings = Field(default_factory=LlmSettings)
    gpu: GpuSettings = Field(default_factory=GpuSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    callbacks: CallbackSettings = Field(default_factory=CallbackSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    ollama_host: str | None = Field(default=None, validation_alias=AliasChoices("OLLAMA_HOST", "APP_OLLAMA_HOST"))
    database_url: str | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL", "APP_DATABASE_URL"))

    def model_post_init(self, _context: object) -> None:
        """Let the conventional `OLLAMA_HOST` and `DATABASE_URL` variables win."""
        if self.ollama_host:
            self.llm.ollama_host = self.ollama_host
        if self.database_url:
            self.database.url = self.database_url.replace("postgresql://", "postgresql+psycopg://", 1)


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
