"""The HTTP side of `assistant serve`: a FastAPI app with three endpoints over a pool of assistants.

    POST /v1/chat/completions   the question is the last user message (protocol.conversation); streamed as
                                server-sent events with "stream": true
    GET  /v1/models             search-assistant and search-assistant-closed
    GET  /health                {"status", "queue", "running", "slots"}: requests waiting for a slot, answering

With a server key every endpoint but /health asks for `Authorization: Bearer KEY`. A body past
protocol.MAX_REQUEST_BYTES is refused before it is parsed; a request's `max_tokens` can lower the server's
`--max-tokens`, never raise it. Errors come back in OpenAI's shape: 400 for a request the server cannot use, 401
for a missing or wrong key, 404 for an unknown model or path, 413 for a body too large, 500 when answering failed
(the message says why). A client that goes away stops its answer (workers.Answering.cancel): a stream notices at
once, a plain request at its next read of the connection.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assistant.errors import AssistantError, BadInput
from assistant.events import Answer, Event, StepStarted, Token, ToolCalled
from assistant.runner import Assistant
from assistant.serve import protocol
from assistant.serve.protocol import ChatRequest, Conversation, Reply
from assistant.serve.workers import Answering, Pool

log = logging.getLogger(__name__)
KEEPALIVE_SECONDS = 2.0  # a stream with nothing to say (in line, searching, prefill) says this often that it lives


class ApiError(Exception):
    """A request refused, with its HTTP status and OpenAI error type."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.kind, self.code = status, kind, code

    def response(self) -> JSONResponse:
        """The error as OpenAI sends one."""
        return JSONResponse(protocol.error(str(self), self.kind, self.code), status_code=self.status)


def create_app(pool: Pool, key: str | None = None, keepalive: float = KEEPALIVE_SECONDS) -> FastAPI:
    """The server's app over `pool`; `key`: the Bearer key every endpoint but /health asks for (None: none)."""
    app = FastAPI(title="search-assistant", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit, max_bytes=protocol.MAX_REQUEST_BYTES)

    def authorized(request: Request) -> None:
        if key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key.encode()):
            raise ApiError(
                401, "missing or wrong server key — send `Authorization: Bearer KEY`", code="invalid_api_key"
            )

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "queue": pool.waiting, "running": pool.running, "slots": pool.size}

    @app.get("/v1/models", dependencies=[Depends(authorized)])
    async def models() -> dict[str, Any]:
        return protocol.models_list()

    @app.post("/v1/chat/completions", dependencies=[Depends(authorized)])
    async def chat_completions(body: ChatRequest, request: Request) -> Response:
        if body.model not in protocol.MODELS:
            known = ", ".join(protocol.MODELS)
            raise ApiError(404, f"unknown model {body.model!r} — one of: {known}", code="model_not_found")
        talk = protocol.conversation(body)
        reply = Reply.new(body.model)

        def start() -> Answering:  # called where the answer is read, so that whoever reads it can stop it
            return Answering(pool, lambda assistant: _ask(assistant, talk, protocol.MODELS[body.model], body))

        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            events = _stream(start, reply, include_usage, keepalive)
            headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            return StreamingResponse(events, media_type="text/event-stream", headers=headers)
        answer = await _unless_gone(request, _final(start))
        if answer is None:  # the client left: nobody reads this (499 is nginx's "client closed request")
            return Response(status_code=499)
        return JSONResponse(reply.completion(answer))

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return e.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0]
        if first["type"] == "json_invalid":
            return ApiError(400, "the request body is not valid JSON").response()
        where = ".".join(str(part) for part in first["loc"] if part != "body") or "body"
        return ApiError(400, f"bad request: {where}: {first['msg']}").response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        return ApiError(e.status_code, str(e.detail)).response()

    @app.exception_handler(AssistantError)
    async def failed(request: Request, e: AssistantError) -> JSONResponse:
        return _api_error(e).response()

    return app


def _ask(assistant: Assistant, talk: Conversation, search: bool, body: ChatRequest) -> Iterator[Event]:
    """The events of one answer, as `ask` and `chat` get them."""
    return assistant.ask(
        talk.question,
        search=search,
        history=talk.history,
        instructions=talk.instructions,
        max_tokens=body.answer_tokens(),
    )


def _api_error(e: BaseException) -> ApiError:
    """What a failure while answering becomes: bad input 400, anything else 500, its message one line; an
    unexpected exception's message stays in the server's log (it may name files and paths of the machine)."""
    if isinstance(e, BadInput):
        return ApiError(400, str(e))
    if isinstance(e, AssistantError):
        return ApiError(500, str(e), "server_error")
    log.error("answering failed", exc_info=e)
    return ApiError(500, f"internal error ({type(e).__name__}) — see the server's log", "server_error")


async def _final(start: Callable[[], Answering]) -> Answer:
    """The answer a run ends with."""
    final = None
    run = start()
    try:
        while (event := await run.next()) is not None:
            final = event if isinstance(event, Answer) else final
    except Exception as e:
        raise _api_error(e) from None
    finally:
        run.cancel()  # a no-op once the run is done; stops it when this request was cancelled
    if final is None:
        raise ApiError(500, "the answer ended without a final event", "server_error")
    return final


async def _unless_gone(request: Request, work: Any) -> Answer | None:
    """`work`'s result, or None when the client goes away first (`work` is then cancelled)."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request.receive))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        task.cancel()  # a no-op when it is done
    return task.result() if not task.cancelled() else None


async def _disconnected(receive: Receive) -> None:
    """Returns when the client closes the connection (the body has been read: nothing else comes)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _stream(
    start: Callable[[], Answering], reply: Reply, include_usage: bool, keepalive: float
) -> AsyncIterator[bytes]:
    """The SSE body: the answer's tokens as they come, the checked answer if it differs, then the finishing chunk
    with the sources, usage and the `ask --json` object. Cancelled when the client goes away."""
    streamed = ""  # the text of this step's answer so far, as the model wrote it
    defuser = protocol.Defuser()  # ... and as the client gets it
    run = start()
    try:
        yield reply.chunk({"role": "assistant", "content": ""})
        while True:
            try:
                event = await run.next(keepalive)
            except Exception as e:
                refused = _api_error(e)
                yield protocol.sse(protocol.error(str(refused), refused.kind, refused.code))
                break
            if event is None:
                if run.done:
                    break
                yield protocol.KEEPALIVE
            elif isinstance(event, Token):
                streamed += event.text
                yield reply.text(defuser.feed(event.text))
            elif isinstance(event, ToolCalled) and streamed.strip():  # the draft found no support: search again
                query = str(event.arguments.get("query") or event.arguments.get("url") or event.name)
                streamed = ""
                yield reply.text(defuser.flush() + protocol.searching_again(query))
            elif isinstance(event, StepStarted):
                continue
            elif isinstance(event, Answer):
                checked = defuser.feed(protocol.checked_answer(event, streamed)) + defuser.flush()
                if checked:
                    yield reply.text(checked)
                yield reply.finish(event)
                if include_usage:
                    yield reply.usage_only(event)
    finally:
        run.cancel()
    yield protocol.DONE


class BodyLimit:
    """ASGI middleware: a request body past `max_bytes` is answered 413 before the app reads it."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:  # a chunked body has no Content-Length to check first
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # what comes after the body: the disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = f"{self.max_bytes // 1000} kB"
        await ApiError(413, f"the request body is larger than {limit}", code="request_too_large").response()(
            scope, receive, send
        )
