"""`assistant serve`: the search assistant as an OpenAI-compatible model, for any chat window or client.

    assistant serve --search local --index wiki.db                       # http://127.0.0.1:8088/v1
    curl -s localhost:8088/v1/chat/completions -H 'Content-Type: application/json' \\
      -d '{"model": "search-assistant", "messages": [{"role": "user", "content": "Who painted The Night Watch?"}]}'
    ASSISTANT_SERVER_KEY=... assistant serve --host 0.0.0.0 --backend openai --base-url http://gpu:8000/v1 -j 8

Reading order: protocol.py (the wire shapes: request, conversation, reply text, chunks, errors), workers.py (the
pool of assistants and the thread each answer runs in, with its cancellation), app.py (the endpoints). The server
stack (FastAPI, uvicorn) is the `serve` extra, imported only here and in app.py, so `ask` never pays for it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from assistant.errors import BadInput, MissingExtra
from assistant.runner import Assistant
from assistant.settings import Settings

KEY_VARIABLE = "ASSISTANT_SERVER_KEY"


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, key: str | None) -> None:
    """BadInput when `host` opens the server beyond this machine without a server key."""
    if not key and not is_loopback(host):
        raise BadInput(
            f"--host {host} accepts connections from other machines: set a server key first ({KEY_VARIABLE}=..., "
            "or --server-key), which clients then send as `Authorization: Bearer KEY`"
        )


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    key: str | None,
    slots: int,
    started: Callable[[str], None] = print,
    access_log: bool = False,
) -> None:
    """Load `slots` assistants (one per answer at a time) and serve them on host:port until interrupted."""
    check_bind(host, key)
    try:
        import uvicorn

        from assistant.serve.app import create_app
    except ImportError as e:
        raise MissingExtra(e.name or "fastapi", "serve") from None
    from assistant.serve.workers import Pool

    assistants = [Assistant.from_settings(settings)]  # the first alone: a bad model fails before the others load
    assistants += [Assistant.from_settings(settings) for _ in range(slots - 1)]
    pool = Pool(assistants)
    try:
        where = f"[{host}]" if ":" in host else host
        started(
            f"serving {assistants[0].model.name} as an OpenAI-compatible model on http://{where}:{port}/v1 "
            f"({slots} at a time{', key required' if key else ''}); Ctrl-C stops"
        )
        uvicorn.run(create_app(pool, key), host=host, port=port, log_config=None, access_log=access_log)
    finally:
        pool.close()
