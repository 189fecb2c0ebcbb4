"""The local app's HTTP side: a FastAPI app over a loaded `Workbench`.

    app = create_app(Workbench.load(params, "data/saes", "data/analysis", "data/texts/labelled.jsonl"))
    uvicorn.run(app, host="127.0.0.1", port=8000)     # what `python -m sae_workbench serve` does

Routes: `/` the page (page.html, self-contained: no CDN, no web fonts); `/api/info`;
`POST /api/prompt` {prompt, hook?}; `POST /api/steer` {prompt, feature, coefficient,
mode?, max_new_tokens?, hook?}; `/api/feature/<hook>/<id>`; `/browser/` the static
feature browser (report/browser), when it has been built.

Every refusal is a 4xx whose body is {"error": "one line"}: a bad field (FastAPI's
validation errors made one line), malformed JSON, NaN or infinite numbers, a body over
MAX_BODY_BYTES, an unknown hook, feature or route, and a busy app (429: more than
Limits.max_requests model requests, or max_steering steering requests, in flight)
rather than a queue without end. Model work runs in worker threads, so the event loop
keeps answering while a long steering run goes on; when a client goes away mid-request
its work stops at the next forward pass and frees its slot.
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import suppress
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ..viz.highlight import HIGHLIGHT_CSS
from .workbench import Cancelled, RequestError, Workbench

MAX_BODY_BYTES = 1_000_000
"""Request bodies above this are refused (413) before they are read."""

DISCONNECT_POLL_S = 0.2
"""How often a running request checks whether its client is still there."""


class PromptRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str
    hook: str | None = None
    """None: steer.hook if served, else the first hook."""


class SteerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str
    feature: int
    coefficient: float = Field(allow_inf_nan=False)
    """Multiple of the feature's max activation (Python's json reads NaN and Infinity: refused here)."""
    mode: str = "add"
    max_new_tokens: int = 20
    hook: str | None = None


def one_line(err: RequestValidationError) -> str:
    """FastAPI's list of validation errors as one line: the first error, its field named."""
    e = err.errors()[0]
    loc = [str(x) for x in e.get("loc", ()) if x != "body"]
    if e.get("type") == "json_invalid":
        return f"the request body is not valid JSON ({e.get('ctx', {}).get('error', 'decode error')}): send a JSON object"
    if not loc:
        return f"the request body must be a JSON object of the request's fields ({e.get('msg', 'invalid')})"
    msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{'.'.join(loc)}: {msg}{more}"


class BodyLimit:
    """ASGI middleware: a request whose Content-Length is over MAX_BODY_BYTES gets 413 unread."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            size = dict(scope["headers"]).get(b"content-length", b"0").decode("latin-1")
            if not size.isdigit() or int(size) > MAX_BODY_BYTES:
                msg = f"the request body is {size} bytes; the limit is {MAX_BODY_BYTES:,}"
                await JSONResponse({"error": msg}, status_code=413)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class Gate:
    """How many model requests, and steering requests, are in flight; beyond the limits a
    request is refused with 429 at once. Touched only from the event loop's thread."""

    def __init__(self, max_requests: int, max_steering: int):
        self.max_requests, self.max_steering = max_requests, max_steering
        self.running = self.steering = 0

    def enter(self, steering: bool) -> None:
        if self.running >= self.max_requests:
            raise RequestError(429, f"busy: {self.running} model requests are running (the limit); retry in a few seconds")
        if steering and self.steering >= self.max_steering:
            raise RequestError(429, f"busy: {self.steering} steering requests are running (the limit); retry in a few seconds")
        self.running += 1
        self.steering += steering

    def leave(self, steering: bool) -> None:
        self.running -= 1
        self.steering -= steering


def page() -> str:
    """page.html with the report's highlight style (viz.highlight.HIGHLIGHT_CSS) put in."""
    return files(__package__).joinpath("page.html").read_text(encoding="utf-8").replace("<!--HIGHLIGHT_CSS-->", HIGHLIGHT_CSS)


def create_app(wb: Workbench, browser: str | Path | None = None) -> FastAPI:
    """The app over a loaded workbench; `browser`: the static feature browser's directory,
    mounted at /browser/ when it exists."""
    app = FastAPI(title="SAE workbench", docs_url=None, redoc_url=None, openapi_url=None)
    gate = Gate(wb.limits.max_requests, wb.limits.max_steering)
    html = page()

    @app.exception_handler(RequestError)
    async def refused(request: Request, e: RequestError):
        return JSONResponse({"error": str(e)}, status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        return JSONResponse({"error": one_line(e)}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException):
        msg = f"no such page: {request.url.path}" if e.status_code == 404 else f"{e.detail} ({request.method} {request.url.path})"
        return JSONResponse({"error": msg}, status_code=e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def crashed(request: Request, e: Exception):  # a bug: say so in one line, keep serving
        first = str(e).splitlines()[0] if str(e) else ""
        return JSONResponse({"error": f"internal error ({type(e).__name__}: {first[:200]})"}, status_code=500)

    app.add_middleware(BodyLimit)

    async def model_work(request: Request, steering: bool, fn, *args):
        """fn(*args) in a worker thread, within the gate's limits; stopped if the client goes away."""
        gate.enter(steering)
        cancel = threading.Event()
        try:
            task = asyncio.ensure_future(run_in_threadpool(wb.call, cancel, fn, *args))
            while not task.done():
                await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
                if not task.done() and await request.is_disconnected():
                    cancel.set()
                    with suppress(Cancelled, RequestError):
                        await task  # the slot is free once the thread has stopped, not before
                    return JSONResponse({"error": "the client went away; the request was stopped"}, status_code=499)
            return task.result()
        finally:
            gate.leave(steering)

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return html

    @app.get("/api/info")
    async def info():
        return {**wb.info(), "running": gate.running, "steering_running": gate.steering}

    @app.post("/api/prompt")
    async def prompt_view(req: PromptRequest, request: Request):
        return await model_work(request, False, wb.prompt_view, req.hook, req.prompt)

    @app.post("/api/steer")
    async def steer(req: SteerRequest, request: Request):
        return await model_work(request, True, wb.steer, req.hook, req.feature, req.coefficient, req.mode, req.prompt,
                                req.max_new_tokens)

    @app.get("/api/feature/{hook}/{feature}")
    async def feature(hook: str, feature: int):
        return wb.feature_summary(hook, feature)

    if browser is not None and Path(browser).is_dir():
        app.mount("/browser", StaticFiles(directory=str(browser), html=True), name="browser")
    return app
