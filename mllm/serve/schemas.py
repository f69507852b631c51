"""The API's request and response shapes (its OpenAPI description) and FastAPI's validation errors rewritten as
sentences naming the field and what to send instead."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from .limits import MAX_SEED, Limits


class Problem(BaseModel):
    """Every refusal: what is wrong and the fix, in one message."""

    detail: str = Field(description="what is wrong; the fix")


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` of the refusals an endpoint may answer."""
    text = {400: "the body could not be parsed", 413: "the request body or the image is over the size limit",
            415: "the upload is not an image", 422: "a field is missing, of the wrong type, empty, too long or out "
                                                    "of range",
            503: "the server is busy (every worker busy, the queue full); retry after Retry-After seconds"}
    return {s: {"model": Problem, "description": text[s]} for s in statuses}


def prompt_pattern(characters: str) -> str:
    """A regular expression (JSON Schema and Python alike) of the prompts made of `characters` only."""
    return "^[" + "".join(c if c.isalnum() and c.isascii() else f"\\u{ord(c):04x}" for c in characters) + "]+$"


def _whole(value: Any) -> Any:
    """A JSON number with no fraction (5.0) is a whole number, as JSON Schema's "integer" says; the rest stays as
    sent, for the strict check (a string or a boolean is no number)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


WholeNumber = Annotated[int, BeforeValidator(_whole)]


def generate_request(limits: Limits, characters: str) -> type[BaseModel]:
    """The body of /api/generate. Its schema states every range; pydantic checks only the types (strictly: "5" is
    not a number), and the ranges are checked by `TextModel.check`, whose messages name the fix."""
    return create_model(
        "GenerateRequest",
        __config__=ConfigDict(strict=True, extra="forbid"),
        __doc__="A Tiny Shakespeare continuation: the prompt, how many new characters, how random.",
        prompt=(str, Field(description="text to continue, in the model's characters", examples=["ROMEO:"],
                           json_schema_extra={"minLength": 1, "maxLength": limits.max_prompt_chars,
                                              "pattern": prompt_pattern(characters)})),
        length=(WholeNumber, Field(min(300, limits.max_length), description="new characters to generate",
                           json_schema_extra={"minimum": 1, "maximum": limits.max_length})),
        temperature=(float, Field(0.8, description="0 = greedy; higher = more random",
                                  json_schema_extra={"minimum": 0, "maximum": limits.max_temperature})),
        seed=(WholeNumber, Field(0, description="random seed of the sampling",
                         json_schema_extra={"minimum": 0, "maximum": MAX_SEED})),
    )


class WordAttention(BaseModel):
    """Where the language model looked in the image when it wrote one word."""

    word: str
    map: list[list[float]] = Field(description="attention over the image tokens' grid (sums to one), mean over "
                                               "heads and layers")
    png: str = Field(description="that map as a coloured PNG (data: URL)")


class CaptionResponse(BaseModel):
    """Both captioners' captions of one image, the image as they see it and their ViTs' attention."""

    captions: dict[str, dict[str, str]] = Field(description='{"supervised"|"scst": {"greedy": ..., "beam": ...}}')
    word_attention: dict[str, dict[str, list[WordAttention]]] = Field(
        description='{"supervised"|"scst": {"greedy"|"beam": one entry per word of that caption}}')
    attention: dict[str, list[list[float]]] = Field(
        description="per captioner: the class token's attention rollout over the ViT's patch grid")
    attention_png: dict[str, str] = Field(description="per captioner: that map as a coloured PNG (data: URL)")
    model_input_png: str = Field(description="the image as the captioners see it (image_size a side, data: URL)")
    image_size: int
    seconds: float = Field(description="server time for this request")


def unparsable(path: str) -> str:
    """The message for a body FastAPI could not parse at all (not UTF-8, a broken form)."""
    if path == "/api/caption":
        return ("the body is not a multipart form the server can parse; send the image as the form field 'file' "
                "(e.g. curl -F file=@photo.jpg)")
    return ("the body could not be parsed (JSON must be UTF-8 text); send an object such as "
            "{\"prompt\": \"ROMEO:\", \"length\": 300}")


def readable(error: RequestValidationError) -> str:
    """FastAPI's validation errors as one sentence per field, with what to send instead."""
    parts = []
    for e in error.errors():
        where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query") and not isinstance(x, int))
        kind = e.get("type")
        if kind == "json_invalid":
            parts.append(f"the body is not valid JSON ({e.get('ctx', {}).get('error', 'decode error')}); send an "
                         f"object such as {{\"prompt\": \"ROMEO:\", \"length\": 300}}")
        elif kind == "missing":
            fix = "attach an image as the form field 'file'" if where == "file" else "send it"
            parts.append(f"{where or 'the request body'} is missing; {fix}")
        elif kind == "extra_forbidden":
            parts.append(f"{where} is not a field of this request; send only the fields in /openapi.json")
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            parts.append("the body is not a JSON object; send one such as {\"prompt\": \"ROMEO:\", \"length\": 300}")
        else:
            parts.append(f"{where or 'the request body'}: {e.get('msg', 'invalid')} (see /openapi.json)")
    return "; ".join(parts) or "the request is invalid (see /openapi.json)"
