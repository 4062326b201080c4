"""The web dashboard (issue 15): a third adapter, beside the SMTP session and the JSON API, over
the same use cases (`core/`, `domainops`), server-rendered with Jinja2 under
/dashboard on every API listener. Login and security: `web.py`, `session.py`, `login.py`."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from . import domains, inboxes, login, logs, operator, overview, suppressions, templates_page, tokens, webhooks
from .web import HANDLERS, PREFIX, SecurityHeaders


def install(app: FastAPI) -> None:
    for module in (login, overview, domains, logs, suppressions, webhooks, tokens, templates_page, inboxes,
                   operator):
        app.include_router(module.router)
    app.mount(PREFIX + "/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="dashboard-static")
    for exc, handler in HANDLERS.items():
        app.add_exception_handler(exc, handler)
    app.add_middleware(SecurityHeaders)
