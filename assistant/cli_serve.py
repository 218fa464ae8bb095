"""The `serve` command: the assistant as an OpenAI-compatible server (assistant/serve/), with `ask`'s options.

assistant serve --search local --index wiki.db           # http://127.0.0.1:8088/v1, model "search-assistant"
ASSISTANT_SERVER_KEY=secret assistant serve --host 0.0.0.0 --backend openai --base-url URL -j 8
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from assistant.cli_app import Output, app, err, fails_cleanly, with_output, with_settings
from assistant.settings import Settings

PARALLEL = 4  # answers at once with --backend openai when -j is not given


@app.command()
@fails_cleanly
@with_settings()
@with_output
def serve(
    settings: Settings,
    output: Output,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; anything but loopback needs a server key.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8088,
    server_key: Annotated[
        str | None,
        typer.Option(
            "--server-key",
            envvar="ASSISTANT_SERVER_KEY",
            show_envvar=True,
            help="Key clients must send as `Authorization: Bearer KEY` (the variable keeps it out of `ps`). Not "
            "api_key, which is the key this server sends to --base-url.",
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            "-j",
            min=1,
            help=f"Answers at once (default: {PARALLEL} with --backend openai; a local model answers one at a time, "
            "the others wait in line).",
        ),
    ] = None,
) -> None:
    """Serve the assistant as an OpenAI-compatible model: POST /v1/chat/completions (streaming or not), GET
    /v1/models, GET /health. Chat windows, `llm` and the `openai` client can use it (README: Serve)."""
    from assistant.batch import workers_for
    from assistant.serve import check_bind, serve

    check_bind(host, server_key)  # before any model loads
    slots, note = workers_for(settings, concurrency or PARALLEL)
    if note and concurrency is not None and not output.quiet:
        err.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)

    def started(line: str) -> None:
        if not output.quiet:
            err.print(f"[dim]{escape(line)}[/dim]", highlight=False, soft_wrap=True)

    serve(settings, host=host, port=port, key=server_key, slots=slots, started=started, access_log=output.verbose)
