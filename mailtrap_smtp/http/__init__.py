"""The HTTPS Email API adapter: Mailtrap's send, batch and management paths over the same use cases
as SMTP (`submission.Submission`, `auth.Authenticator`, `domainops`). One module per job:

* `server.py`: listeners (SO_REUSEPORT sockets, TLS), uvicorn servers inside the service's loop;
* `app.py`: the FastAPI application, its error handlers and middleware (body limit, metrics);
* `errors.py`: every error shape and THE outcome → HTTP status and Mailtrap error text table;
* `principal.py`: the token dependency (Bearer or Api-Token) and the permission check;
* `models.py`: pydantic models, the single definition of every request and response shape;
* `mime.py`: JSON mail → MIME message (pure, standard library `email`);
* `send.py`: POST /api/send and /api/batch;
* `ratelimit.py`: requests per token per window, shared by the processes of a node.
"""
