"""The API's error table: every outcome of the one vocabulary (submission's and the token look-up's)
has an HTTP answer, each with a Mailtrap-shaped body (an `errors` list of strings)."""

from __future__ import annotations

import pytest

from mailtrap_smtp.http import errors
from mailtrap_smtp.outcomes import Outcome


@pytest.mark.parametrize("outcome", list(Outcome))
def test_every_outcome_has_an_http_mapping(outcome: Outcome) -> None:
    assert outcome in errors.OUTCOMES
    error = errors.for_outcome(outcome)
    assert 400 <= error.status < 600
    assert error.body()["errors"] and all(isinstance(m, str) for m in error.body()["errors"])


# What the token look-up's refusals answered before they joined the one vocabulary (when they were
# `auth.AuthOutcome` with a table of their own): the bodies must not change.
@pytest.mark.parametrize(("outcome", "status", "text", "manage"), [
    (Outcome.CREDENTIAL_INVALID, 401, "Unauthorized", errors.MANAGE_UNAUTHORIZED),
    (Outcome.CREDENTIAL_UNKNOWN, 401, "Unauthorized", errors.MANAGE_UNAUTHORIZED),
    (Outcome.NOT_PERMITTED, 401, "Unauthorized", errors.MANAGE_UNAUTHORIZED),
    (Outcome.AUTH_UNAVAILABLE, 503, "Service temporarily unavailable, please try again later",
     errors.MANAGE_INTERNAL),
    (Outcome.QUOTA_EXCEEDED, 403, "Monthly messages limit reached", errors.MANAGE_UNAUTHORIZED),
    (Outcome.TOO_MANY_CONNECTIONS, 429, "Too many connections per account", errors.MANAGE_UNAUTHORIZED),
])
def test_token_outcomes_answer_as_before(outcome: Outcome, status: int, text: str,
                                         manage: errors.ManageError) -> None:
    error = errors.for_outcome(outcome)
    assert (error.status, error.body()) == (status, {"success": False, "errors": [text]})
    assert errors.for_manage_auth(outcome) is manage


def test_documented_texts() -> None:  # MAILTRAP_COMPAT.md §2.6, §3
    assert errors.UNAUTHORIZED.body() == {"success": False, "errors": ["Unauthorized"]}
    assert errors.for_outcome(Outcome.QUOTA_EXCEEDED).body() == {"success": False,
                                                           "errors": ["Monthly messages limit reached"]}
    assert errors.for_outcome(Outcome.QUOTA_EXCEEDED).status == 403
    assert errors.for_outcome(Outcome.SIZE_EXCEEDED).status == 413
    assert errors.MANAGE_UNAUTHORIZED.body() == {"error": "Incorrect API token"}
    assert errors.MANAGE_NOT_FOUND.body() == {"error": "Not Found"}
