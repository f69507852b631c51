"""The web demo's FastAPI app: the page (served from the package, nothing from the internet), a JSON API
(`/api/info`, `/api/caption`, `/api/generate`) and its OpenAPI description at /openapi.json.

In front of it two ASGI middlewares (`asgi.py`): request bodies bounded while they stream in, and at most
`workers + queue` requests admitted to model work (503 with Retry-After past that). Model calls run on the work
pool's threads (`work.py`), never on the event loop. FastAPI's /docs and /redoc pages load their scripts from a
CDN, so they are switched off. Every refused input is a 4xx with `{"detail": "<what is wrong and the fix>"}`,
checked before any model work, and the server goes on serving.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from .asgi import Admission, BodyLimit
from .limits import InputError
from .models import DemoModels
from .schemas import CaptionResponse, generate_request, problems, readable, unparsable
from .text import TextStream
from .work import WorkPool

STATIC = Path(__file__).parent / "static"
CHUNK = 16  # characters per model call of a streamed generation


def create_app(models: DemoModels, pool: WorkPool | None = None) -> FastAPI:
    """The app around loaded models; `uvicorn.run(create_app(models))` serves it."""
    limits = models.limits
    pool = pool or WorkPool(limits.workers, limits.queue)
    app = FastAPI(title="MLLM from scratch: web demo", docs_url=None, redoc_url=None,
                  description="Caption an image with the supervised and the SCST captioner, side by side, and "
                              "generate Tiny Shakespeare with the char GPT. Errors: 4xx/503 with a `detail` message.")
    app.state.pool = pool
    app.add_middleware(Admission, pool=pool, limits=limits)
    app.add_middleware(BodyLimit, limits=limits)  # added last: outermost, before admission
    GenerateRequest = generate_request(limits, models.text.known)

    @app.exception_handler(InputError)
    async def input_error(request: Request, e: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": readable(e)}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        detail = unparsable(request.url.path) if e.status_code == 400 else e.detail  # FastAPI's own is terse
        return JSONResponse({"detail": detail}, status_code=e.status_code, headers=e.headers)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/info", summary="the loaded models, their decoding settings, the input limits and the work pool")
    def info() -> dict[str, Any]:
        return models.info()

    @app.post("/api/caption", response_model=CaptionResponse, responses=problems(400, 413, 415, 422, 503),
              summary="caption an image (any common format and size) with both captioners, greedy and beam")
    async def caption(file: Annotated[UploadFile, File(description="the image file")]) -> dict[str, Any]:
        data = await file.read()  # at most the body limit: BodyLimit cut anything larger
        return await pool.run(models.caption, data, file.filename or "upload")

    async def generate(body: Any) -> StreamingResponse:
        stream = models.text.start(body.prompt, body.length, body.temperature, body.seed)  # checked: 422 here
        first = await pool.run(stream.step, min(CHUNK, body.length))  # a failing model is a 500, not an empty 200
        return StreamingResponse(_rest(pool, stream, first, body.length), media_type="text/plain; charset=utf-8",
                                 headers={"X-Content-Type-Options": "nosniff"})

    generate.__annotations__ = {"body": GenerateRequest, "return": StreamingResponse}  # a model built per limits
    app.post("/api/generate", response_class=StreamingResponse, summary="generate Tiny Shakespeare, streamed",
             responses={200: {"content": {"text/plain": {"schema": {"type": "string", "minLength": 1}}},
                              "description": "the new characters, streamed in chunks as they are generated"},
                        **problems(400, 413, 422, 503)})(generate)

    return app


async def _rest(pool: WorkPool, stream: TextStream, first: str, length: int) -> AsyncIterator[str]:
    """The first chunk, then the others, each one model call on the work pool."""
    yield first
    done = min(CHUNK, length)
    while done < length:
        n = min(CHUNK, length - done)
        yield await pool.run(stream.step, n)
        done += n
