"""Errors as HTTP answers: 422 in FastAPI's format with field paths, others as `{"detail": sentence}`."""

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from temporalio.service import RPCError, RPCStatusCode
from urllib3.exceptions import HTTPError as StorageConnectionError

from workflows.planner import PlanningError

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with an HTTP status and a human sentence."""

    def __init__(self, status_code: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.headers = headers


def field_error(loc: tuple[str | int, ...], message: str, kind: str = "value_error") -> JSONResponse:
    """A 422 shaped like FastAPI's request-validation errors."""
    return JSONResponse(status_code=422, content={"detail": [{"loc": list(loc), "msg": message, "type": kind}]})


class FieldError(Exception):
    """A request field that passed the schema but not the server's checks."""

    def __init__(self, loc: tuple[str | int, ...], message: str, status_code: int = 422) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message
        self.status_code = status_code


def install(app: FastAPI) -> None:
    """Register the handlers."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse(status_code=err.status_code, content={"detail": err.detail}, headers=err.headers)

    @app.exception_handler(FieldError)
    async def _field_error(_request: Request, err: FieldError) -> JSONResponse:
        if err.status_code == 422:
            return field_error(err.loc, err.message)
        return JSONResponse(
            status_code=err.status_code, content={"detail": f"{'.'.join(map(str, err.loc[1:]))}: {err.message}"}
        )

    @app.exception_handler(PlanningError)
    async def _planning_error(_request: Request, err: PlanningError) -> JSONResponse:
        if err.status_code == 422:
            return field_error(err.loc, err.message, err.kind)
        return JSONResponse(status_code=err.status_code, content={"detail": err.message})

    @app.exception_handler(RPCError)
    async def _temporal_error(_request: Request, err: RPCError) -> JSONResponse:
        if err.status == RPCStatusCode.NOT_FOUND:
            return JSONResponse(status_code=404, content={"detail": "no such job"})
        logger.warning("Temporal call failed: %s", err)
        return JSONResponse(
            status_code=503, content={"detail": "the workflow service (Temporal) is unavailable; try again shortly"}
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _database_error(_request: Request, err: Exception) -> JSONResponse:
        logger.warning("database call failed: %s", err)
        return JSONResponse(status_code=503, content={"detail": "the database is unavailable; try again shortly"})

    @app.exception_handler(StorageConnectionError)
    async def _storage_error(_request: Request, err: Exception) -> JSONResponse:
        logger.warning("object storage call failed: %s", err)
        return JSONResponse(status_code=503, content={"detail": "object storage is unavailable; try again shortly"})
