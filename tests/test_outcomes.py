"""The outcome vocabulary: every outcome has an SMTP reply, and a database that does not answer is an
outcome, not an exception that reaches an adapter."""

from __future__ import annotations

from typing import Any

import pytest

from mailtrap_smtp import metrics, replies, tokens
from mailtrap_smtp.auth import Authenticator, Principal
from mailtrap_smtp.outcomes import Outcome, Rejected
from mailtrap_smtp.store import db as store_db
from mailtrap_smtp.submission import Envelope, Submission


@pytest.mark.parametrize("outcome", list(Outcome))
def test_every_outcome_has_an_smtp_error_reply(outcome: Outcome) -> None:
    reply = replies.OUTCOME_REPLIES[outcome]
    assert reply.is_error
    assert replies.REPLIES[reply.name] is reply


# The AUTH replies of the token look-up's refusals, as they were when `auth.AuthOutcome` had its own
# mapping in the session: unchanged now that they are outcomes of the one vocabulary.
@pytest.mark.parametrize(("outcome", "line", "label"), [
    (Outcome.CREDENTIAL_INVALID, "535 5.7.8 Authentication credentials invalid", "invalid"),
    (Outcome.CREDENTIAL_UNKNOWN, "535 5.7.8 Authentication credentials invalid", "invalid"),
    (Outcome.NOT_PERMITTED, "535 5.7.8 Authentication credentials invalid", "not_allowed"),
    (Outcome.AUTH_UNAVAILABLE, "454 4.7.0 Temporary authentication failure", "temporary"),
    (Outcome.QUOTA_EXCEEDED, "535 5.7.0 Monthly messages limit reached", "quota"),
    (Outcome.TOO_MANY_CONNECTIONS, "535 5.7.8 Too many connections per account", "too_many_connections"),
])
def test_token_outcomes_reply_and_count_as_before(outcome: Outcome, line: str, label: str) -> None:
    reply = replies.OUTCOME_REPLIES[outcome]
    assert reply.line == line
    assert metrics.AUTH_ATTEMPT_LABELS[outcome] == label


async def test_token_lookup_without_database_is_auth_unavailable(db_dsn: str) -> None:
    pool = await store_db.create_pool(db_dsn, min_size=1, max_size=2)
    await pool.close()
    with pytest.raises(Rejected) as info:
        await Authenticator(pool).authenticate(tokens.generate().token)
    assert info.value.outcome is Outcome.AUTH_UNAVAILABLE


@pytest.mark.parametrize("token", ["", "not-a-token", "mts_0123abcd_" + "A" * 31 + "\x00", "tökén"])
async def test_malformed_token_is_unknown_without_a_lookup(token: str) -> None:
    with pytest.raises(Rejected) as info:
        await Authenticator(pool=None).authenticate(token)  # no pool: a look-up would fail otherwise
    assert info.value.outcome is Outcome.CREDENTIAL_UNKNOWN


def _principal(**kw: Any) -> Principal:
    base: dict[str, Any] = dict(credential_id=1, account_id=1, account_name="a", stream="transactional",
                                monthly_limit=10, max_message_size=2000, billing_anchor_day=1)
    base.update(kw)
    return Principal(**base)


class _NoSigner:
    async def sign(self, message: bytes, domain: str) -> bytes:
        raise AssertionError("nothing may be signed")


@pytest.fixture
async def closed_pool_submission(db_dsn: str) -> Any:
    pool = await store_db.create_pool(db_dsn, min_size=1, max_size=2)
    sub = Submission(pool, _NoSigner(), hostname="mx.test", require_approval=False)
    await pool.close()
    yield sub


async def test_sender_domain_lookup_without_database_is_temporarily_unavailable(closed_pool_submission: Any) -> None:
    with pytest.raises(Rejected) as info:
        await closed_pool_submission.sender_domain(_principal(), "example.com")
    assert info.value.outcome is Outcome.TEMPORARILY_UNAVAILABLE


async def test_quota_lookup_without_database_is_temporarily_unavailable(closed_pool_submission: Any) -> None:
    with pytest.raises(Rejected) as info:
        await closed_pool_submission.quota_remaining(_principal())
    assert info.value.outcome is Outcome.TEMPORARILY_UNAVAILABLE


@pytest.mark.parametrize(("raw", "outcome"), [
    (b"x" * 2001, Outcome.SIZE_EXCEEDED),
    (b"From: a@example.com\nSubject: s\r\n\r\nbody\r\n", Outcome.BARE_LINE_ENDING),
    (b"From: a@example.com\r\n\r\n" + b"y" * 999 + b"\r\n", Outcome.TEXT_LINE_TOO_LONG),
    (b"Subject: no from\r\n\r\nbody\r\n", Outcome.FROM_HEADER_COUNT),
    (b"From: a@other.test\r\n\r\nbody\r\n", Outcome.FROM_HEADER_MISMATCH),
])
async def test_content_refusals_are_outcomes_and_sign_nothing(closed_pool_submission: Any, raw: bytes,
                                                              outcome: Outcome) -> None:
    principal = _principal(sending_domains={"example.com": 1})
    envelope = Envelope(mail_from="a@example.com", sender_domain_id=1, recipients=["r@x.test"])
    with pytest.raises(Rejected) as info:
        await closed_pool_submission.submit(principal, envelope, raw)
    assert info.value.outcome is outcome


async def test_receive_settles_the_announcement_when_reading_fails(closed_pool_submission: Any) -> None:
    principal = _principal(sending_domains={"example.com": 1})
    envelope = Envelope(mail_from="a@example.com", sender_domain_id=1, recipients=["r@x.test"])

    async def read() -> bytes:
        raise Rejected(Outcome.SIZE_EXCEEDED)

    batcher = closed_pool_submission._batcher
    assert batcher._expected == 0
    with pytest.raises(Rejected):
        await closed_pool_submission.receive(principal, envelope, read)
    assert batcher._expected == 0  # a leaked announcement would make every later commit wait
