"""The API's error table: every use-case outcome and every token outcome has an HTTP answer, each
with a Mailtrap-shaped body (an `errors` list of strings)."""

from __future__ import annotations

import pytest

from mailtrap_smtp.auth import AuthOutcome
from mailtrap_smtp.http import errors
from mailtrap_smtp.outcomes import Outcome


@pytest.mark.parametrize("outcome", list(Outcome))
def test_every_outcome_has_an_http_mapping(outcome: Outcome) -> None:
    assert outcome in errors.OUTCOMES
    error = errors.for_outcome(outcome)
    assert 400 <= error.status < 600
    assert error.body()["errors"] and all(isinstance(m, str) for m in error.body()["errors"])


@pytest.mark.parametrize("outcome", list(AuthOutcome))
def test_every_token_outcome_has_an_http_mapping(outcome: AuthOutcome) -> None:
    assert outcome in errors.AUTH_OUTCOMES
    assert (errors.AUTH_OUTCOMES[outcome] is None) == (outcome is AuthOutcome.OK)


def test_documented_texts() -> None:  # MAILTRAP_COMPAT.md §2.6, §3
    assert errors.UNAUTHORIZED.body() == {"success": False, "errors": ["Unauthorized"]}
    assert errors.for_outcome(Outcome.QUOTA_EXCEEDED).body() == {"success": False,
                                                           "errors": ["Monthly messages limit reached"]}
    assert errors.for_outcome(Outcome.QUOTA_EXCEEDED).status == 403
    assert errors.for_outcome(Outcome.SIZE_EXCEEDED).status == 413
    assert errors.MANAGE_UNAUTHORIZED.body() == {"error": "Incorrect API token"}
    assert errors.MANAGE_NOT_FOUND.body() == {"error": "Not Found"}
