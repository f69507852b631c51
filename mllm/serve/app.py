"""The web demo's FastAPI app: the page (served from the package, nothing from the internet), a JSON API
(`/api/info`, `/api/caption`, `/api/generate`) and its OpenAPI description at /openapi.json.

FastAPI's /docs and /redoc pages load their scripts from a CDN, so they are switched off: no page of this
server fetches anything from outside it. Every refused input is a 4xx with `{"detail": "<what is wrong and the
fix>"}`, and the server goes on serving.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from .limits import too_large
from .models import DemoModels, InputError

STATIC = Path(__file__).parent / "static"
MULTIPART_SLACK = 64 * 1024  # form boundaries and headers around an upload
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {"example": {"detail": "what is wrong; the fix"}}}}
    for code, text in [(413, "the upload is over the size limit"), (415, "the upload is not an image"),
                       (422, "a field is missing, empty, too long or out of range")]}


class GenerateRequest(BaseModel):
    """A Tiny Shakespeare continuation: the prompt, how many new characters, how random."""

    prompt: str = Field(description="text to continue, in the model's characters", examples=["ROMEO:"])
    length: int = Field(300, description="new characters to generate")
    temperature: float = Field(0.8, description="0 = greedy; higher = more random")
    seed: int = Field(0, description="random seed of the sampling")


class CaptionResponse(BaseModel):
    """Both captioners' captions of one image, the image as they see it and their ViTs' attention."""

    captions: dict[str, dict[str, str]] = Field(description='{"supervised"|"scst": {"greedy": ..., "beam": ...}}')
    attention: dict[str, list[list[float]]] = Field(
        description="per captioner: the class token's attention rollout over the ViT's patch grid")
    attention_png: dict[str, str] = Field(description="per captioner: that map as a coloured PNG (data: URL)")
    model_input_png: str = Field(description="the image as the captioners see it (image_size a side, data: URL)")
    image_size: int
    seconds: float = Field(description="server time for this request")


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


def _readable(error: RequestValidationError) -> str:
    """FastAPI's validation errors as one sentence per field, with what to send instead."""
    parts = []
    for e in error.errors():
        where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query") and not isinstance(x, int))
        if e.get("type") == "json_invalid":
            parts.append(f"the body is not valid JSON ({e.get('ctx', {}).get('error', 'decode error')}); send an "
                         f"object such as {{\"prompt\": \"ROMEO:\", \"length\": 300}}")
        elif e.get("type") == "missing":
            fix = "attach an image as the form field 'file'" if where == "file" else "send it"
            parts.append(f"{where or 'the request body'} is missing; {fix}")
        else:
            parts.append(f"{where or 'the request body'}: {e.get('msg', 'invalid')} (see /openapi.json)")
    return "; ".join(parts) or "the request is invalid (see /openapi.json)"


def create_app(models: DemoModels) -> FastAPI:
    """The app around loaded models; `uvicorn.run(create_app(models))` serves it."""
    app = FastAPI(title="MLLM from scratch: web demo", docs_url=None, redoc_url=None,
                  description="Caption an image with the supervised and the SCST captioner, side by side, and "
                              "generate Tiny Shakespeare with the char GPT. Errors: 4xx with a `detail` message.")
    limit = models.limits.max_upload_bytes

    @app.exception_handler(InputError)
    async def input_error(request: Request, e: InputError) -> JSONResponse:
        return _problem(e.status, str(e))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        return _problem(422, _readable(e))

    @app.middleware("http")
    async def refuse_large_bodies(request: Request, call_next):
        """An upload whose declared size is over the limit is refused before its body is read."""
        declared = request.headers.get("content-length", "")
        if request.url.path == "/api/caption" and declared.isdigit() and int(declared) > limit + MULTIPART_SLACK:
            return _problem(413, too_large(int(declared), limit))
        return await call_next(request)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/info", summary="the loaded models, their decoding settings and the input limits")
    def info() -> dict[str, Any]:
        return models.info()

    @app.post("/api/caption", response_model=CaptionResponse, responses=ERRORS,
              summary="caption an image (any common format and size) with both captioners, greedy and beam")
    def caption(file: Annotated[UploadFile, File(description="the image file")]) -> dict[str, Any]:
        data = file.file.read(limit + 1)  # never more than the limit allows (a body without Content-Length)
        return models.caption(data, file.filename or "upload")

    @app.post("/api/generate", response_class=StreamingResponse, summary="generate Tiny Shakespeare, streamed",
              responses={200: {"content": {"text/plain": {}}, "description": "the new characters, streamed in "
                                                                             "chunks as they are generated"},
                         422: ERRORS[422]})
    def generate(body: GenerateRequest) -> StreamingResponse:
        idx = models.check_generation(body.prompt, body.length, body.temperature)  # refused before streaming
        return StreamingResponse(models.stream(idx, body.length, body.temperature, body.seed),
                                 media_type="text/plain; charset=utf-8", headers={"X-Content-Type-Options": "nosniff"})

    return app
