"""The FastAPI app: routes, error handlers, and the clients built once in the lifespan."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import text
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

from api import errors, openapi
from api.deps import Services, ServicesDep
from api.followers import StatusFollowers
from api.limits import MULTIPART_SLACK, BodyLimit
from api.openapi import Health
from api.routes import admin, batches, jobs, presets, profiles, session, uploads, web
from core.queue_backlog import BacklogReader
from core.services import open_services
from core.settings import Settings, get_settings
from core.telemetry import setup_telemetry
from schemas.names import UPLOADS_BUCKET

logger = logging.getLogger(__name__)

TEMPORAL_GIVE_UP = timedelta(seconds=3)  # then a request answers 503 instead of hanging while Temporal is down


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Migrate the database and connect to Postgres, object storage and Temporal."""
    settings = app.dependency_overrides.get(get_settings, get_settings)()
    setup_telemetry(settings.telemetry)
    async with open_services(settings, give_up_after=TEMPORAL_GIVE_UP) as services:
        app.state.services = services
        app.state.queue_backlog = BacklogReader.for_settings(services.temporal, settings.temporal).export()
        app.state.followers = StatusFollowers(services.temporal, settings.api.status_followers)
        try:
            yield
        finally:
            await app.state.followers.close()


async def _ping_db(services: Services) -> None:
    async with services.sessions() as session:
        await session.execute(text("select 1"))


def _upload_body_limit(app: FastAPI) -> int:
    settings: Settings = app.dependency_overrides.get(get_settings, get_settings)()
    return settings.api.max_files_per_upload * settings.api.max_upload_bytes + MULTIPART_SLACK


def create_app() -> FastAPI:
    """Build the app (tests build their own with overridden dependencies)."""
    app = FastAPI(title="MySpinBot", version="0.3.0", lifespan=lifespan)
    errors.install(app)
    app.add_middleware(BodyLimit, prefix="/api/uploads", limit=lambda: _upload_body_limit(app))
    app.include_router(session.router)
    app.include_router(jobs.router)
    app.include_router(profiles.router)
    app.include_router(presets.router)
    app.include_router(batches.router)
    app.include_router(uploads.router)
    app.include_router(web.router)
    app.include_router(admin.router)
    openapi.install(app)  # 401/403/404/409/429/503 … in the OpenAPI document, beside FastAPI's 422
    FastAPIInstrumentor.instrument_app(app, excluded_urls="/metrics,/healthz,/livez")

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        """Prometheus text: the OTel metrics of this process (stage histogram, job counters, HTTP, queue backlog)."""
        backlog: BacklogReader | None = getattr(request.app.state, "queue_backlog", None)
        if backlog is not None:
            await backlog.refresh()  # at most one round of DescribeTaskQueue per 10 s, however often it is scraped
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.get("/livez", tags=["health"], include_in_schema=False)
    async def livez() -> dict[str, str]:
        """The process answers; no dependency is checked, so an outage of one restarts no API pod."""
        return {"status": "ok"}

    @app.get("/healthz", tags=["health"], response_model=Health, responses={503: {"model": Health}})
    async def healthz(services: ServicesDep) -> JSONResponse:
        """Liveness plus a cheap check of each dependency."""
        checks: dict[str, str] = {}
        probes = {
            "temporal": services.temporal.workflow_service.get_system_info(
                GetSystemInfoRequest(), timeout=timedelta(seconds=2)
            ),
            "postgres": _ping_db(services),
            "storage": asyncio.to_thread(services.store.list_keys, UPLOADS_BUCKET, "-healthz-"),
        }
        for name, probe in probes.items():
            try:
                await asyncio.wait_for(probe, timeout=3)
                checks[name] = "ok"
            except Exception as err:  # a health check reports, it never raises
                checks[name] = f"unavailable: {err.__class__.__name__}"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            status_code=200 if ok else 503, content={"status": "ok" if ok else "degraded", "checks": checks}
        )

    return app


app = create_app()
