"""Pydantic models: the single definition of every request and response shape of the send API.

Field names and shapes are Mailtrap's (MAILTRAP_COMPAT.md §2.5-2.7): `from` is a keyword in Python,
hence the alias. Types are only as strict as JSON itself (a wrong JSON type is a 400 from the
app's validation handler); the rules Mailtrap answers with its own texts (required fields, address
syntax, limits) are `mail_problems()`, so every applicable message is reported at once, in
Mailtrap's words.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from .. import mailbox

MAX_RECIPIENTS_PER_FIELD = 1000  # per to / cc / bcc (OAS)
MAX_BATCH_REQUESTS = 500
CATEGORY_MAX = 255
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # printable ASCII except ':' (RFC 5322 §2.2)
_MIME_TYPE = re.compile(r"[\w.+-]+/[\w.+-]+\s*(;[^\x00-\x1f\x7f]*)?")  # parameters are dropped
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class _Shape(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")
    # Fields whose own rule refuses a lone surrogate later, in Mailtrap's words (addresses).
    _judged_later: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="after")
    @classmethod
    def _unicode_text(cls, value: Any, info: ValidationInfo) -> Any:
        """JSON may spell a lone surrogate (`"\\udc80"`), which is no character and cannot be written
        as UTF-8 into a message: the field is invalid (RFC 8259 §8.2 leaves such strings undefined)."""
        if info.field_name not in cls._judged_later and not _encodable(value):
            raise ValueError("not Unicode text")
        return value


def _encodable(value: Any) -> bool:
    if isinstance(value, str):
        if value.isascii():
            return True
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_encodable(k) and _encodable(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_encodable(v) for v in value)
    return True  # numbers, booleans, None; nested models validated themselves


class Address(_Shape):
    _judged_later = frozenset({"email"})  # `mail_problems`: "'to' address is invalid"

    email: str | None = None
    name: str | None = None


class Attachment(_Shape):
    content: str | None = None  # base64
    filename: str | None = None
    type: str | None = None
    disposition: str | None = None  # "attachment" (default) | "inline"
    content_id: str | None = None


class MailFields(_Shape):
    """What `base` and every batch request may carry, and what a single send carries besides to/cc/bcc."""

    sender: Address | None = Field(default=None, alias="from")
    reply_to: Address | None = None
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    attachments: list[Attachment] | None = None
    headers: dict[str, str] | None = None
    category: str | None = None
    custom_variables: dict[str, Any] | None = None
    template_uuid: str | None = None
    template_variables: dict[str, Any] | None = None


class Mail(MailFields):
    """The body of POST /api/send, and one merged batch request."""

    to: list[Address] | None = None
    cc: list[Address] | None = None
    bcc: list[Address] | None = None


class BatchRequest(Mail):
    pass


class BatchBody(_Shape):
    base: MailFields | None = None
    requests: list[BatchRequest] | None = None


class SendResponse(BaseModel):
    success: bool = True
    message_ids: list[str]


class BatchItem(BaseModel):
    success: bool
    message_ids: list[str] | None = None
    errors: list[str] | None = None


class BatchResponse(BaseModel):
    success: bool = True
    responses: list[BatchItem]


class ErrorResponse(BaseModel):
    success: bool = False
    errors: list[str]


def merged(base: MailFields | None, request: BatchRequest) -> Mail:
    """`request` over `base`, field by field, wholesale (no deep merge of dicts: §2.7)."""
    if base is None:
        return Mail.model_validate(request.model_dump(by_alias=True, exclude_unset=True))
    data = base.model_dump(by_alias=True, exclude_unset=True)
    data.update(request.model_dump(by_alias=True, exclude_unset=True))
    return Mail.model_validate(data)


def valid_address(address: str | None) -> bool:
    # The one mailbox rule SMTP applies too (`mailbox.py`); JSON text is Unicode, so an
    # internationalised address (RFC 6531) is as acceptable here as after MAIL ... SMTPUTF8.
    return address is not None and mailbox.valid_mailbox(address, utf8=True)


def _address_ok(a: Address) -> bool:
    return valid_address(a.email) and (a.name is None or _CONTROL.search(a.name) is None)


def header_problem(name: str, value: str) -> str | None:
    if _HEADER_NAME.fullmatch(name) is None or _CONTROL.search(value.replace("\t", " ")) is not None:
        return f"header '{name[:64]}' is invalid"
    return None


def mail_problems(mail: Mail, *, template_engine: bool = False) -> list[str]:
    """Every rule `mail` breaks, as Mailtrap words it, in Mailtrap's order; [] when it may be sent."""
    out: list[str] = []
    if mail.sender is None:
        out.append("'from' is required")
    elif not _address_ok(mail.sender):
        out.append("'from' address is invalid")
    recipients = [*(mail.to or []), *(mail.cc or []), *(mail.bcc or [])]
    if not recipients:
        out.append("'to', 'cc' or 'bcc' address is required")
    for name, field in (("to", mail.to), ("cc", mail.cc), ("bcc", mail.bcc)):
        if field and len(field) > MAX_RECIPIENTS_PER_FIELD:
            out.append(f"'{name}' must have at most {MAX_RECIPIENTS_PER_FIELD} addresses")
        if field and not all(_address_ok(a) for a in field):
            out.append(f"'{name}' address is invalid")
    if mail.reply_to is not None and not _address_ok(mail.reply_to):
        out.append("'reply_to' address is invalid")
    if mail.template_uuid is not None:
        if any(v is not None for v in (mail.subject, mail.text, mail.html, mail.category)):
            out.append("'subject', 'text', 'html' and 'category' are not allowed with 'template_uuid'")
    else:
        if not mail.subject:
            out.append("'subject' is required")
        if not mail.text and not mail.html:
            out.append("must specify either text or html body")
    if mail.category is not None and len(mail.category) > CATEGORY_MAX:
        out.append(f"'category' is too long (maximum is {CATEGORY_MAX} characters)")
    if mail.subject is not None and _CONTROL.search(mail.subject.replace("\t", " ")):
        out.append("'subject' is invalid")
    for a in mail.attachments or []:
        if not a.filename:
            out.append("attachment 'filename' is required")
        if not a.content:
            out.append("attachment 'content' is required")
        if a.disposition not in (None, "attachment", "inline"):
            out.append("attachment 'disposition' must be 'attachment' or 'inline'")
        if a.type is not None and _MIME_TYPE.fullmatch(a.type) is None:
            out.append("attachment 'type' is invalid")
        if a.content_id is not None and re.fullmatch(r"[!-;=?-~]+", a.content_id) is None:
            out.append("attachment 'content_id' is invalid")
        if a.filename and _CONTROL.search(a.filename):
            out.append("attachment 'filename' is invalid")
    for hname, hvalue in (mail.headers or {}).items():
        problem = header_problem(hname, hvalue)
        if problem is not None:
            out.append(problem)
    return out


# --- management API (mailtrap.io paths, MAILTRAP_COMPAT.md §4.3) ---


class AccountOut(BaseModel):
    id: int
    name: str
    access_levels: list[int]


class DnsRecordOut(BaseModel):
    key: str
    domain: str  # the record's FQDN
    type: str
    value: str
    status: str  # pass | fail | unchecked | missing | softfail | network_error
    name: str  # relative to the domain ("" for the apex)


class DomainPermissions(BaseModel):
    can_read: bool
    can_update: bool
    can_destroy: bool


class DomainOut(BaseModel):
    id: int
    domain_name: str
    demo: bool = False
    compliance_status: str
    dns_verified: bool
    dns_verified_at: str | None
    dns_records: list[DnsRecordOut]
    open_tracking_enabled: bool = False
    click_tracking_enabled: bool = False
    auto_unsubscribe_link_enabled: bool = False
    custom_domain_tracking_enabled: bool = False
    health_alerts_enabled: bool = False
    critical_alerts_enabled: bool = False
    alert_recipient_email: str | None = None
    tracking_opt_out_enabled: bool = False
    inbound_enabled: bool = False
    inbound_verified: bool = False
    permissions: DomainPermissions


class DomainList(BaseModel):
    data: list[DomainOut]


class NewDomainFields(_Shape):
    domain_name: str | None = None


class NewSendingDomain(_Shape):
    """Legacy body `{"sending_domain": {...}}` (SDK 2.11) or current `{"domain": {...}}` (OAS)."""

    sending_domain: NewDomainFields | None = None
    domain: NewDomainFields | None = None


class TemplateOut(BaseModel):
    """Mailtrap's EmailTemplate object (§7.3)."""

    id: int
    uuid: str
    name: str
    subject: str
    category: str
    body_text: str | None
    body_html: str | None
    created_at: str
    updated_at: str


class TemplateBody(_Shape):
    """`{"email_template": {name, subject, category, body_text?, body_html?}}`; the values are
    checked by the templates use case (which answers per field)."""

    email_template: dict[str, Any] | None = None


class TemplateData(BaseModel):
    """One template in the `/templates` paths' envelope (the SDK's `TemplateResponse`)."""

    data: TemplateOut


class PaginationOut(BaseModel):
    """Page-token pagination (the SDK's `Pagination`): the token is the page number, from 1."""

    token: int
    prev_token: int | None
    next_token: int | None
    first_url: str
    prev_url: str | None
    current_url: str
    next_url: str | None


class TemplatePage(BaseModel):
    data: list[TemplateOut]
    pagination: PaginationOut


class InboxPermissions(BaseModel):
    can_read: bool
    can_update: bool
    can_destroy: bool
    can_leave: bool


class InboxOut(BaseModel):
    """The SDK's `Inbox` (mailtrap 2.11 `models/inboxes.py`); what each field holds here, and which are
    empty because we have no such thing, is in README's API section. `created_at` is ours."""

    id: int
    name: str
    username: str
    max_size: int
    status: str
    email_username: str
    email_username_enabled: bool
    sent_messages_count: int
    forwarded_messages_count: int
    used: bool
    forward_from_email_address: str
    project_id: int
    domain: str
    pop3_domain: str
    email_domain: str
    api_domain: str
    emails_count: int
    emails_unread_count: int
    smtp_ports: list[int]
    pop3_ports: list[int]
    max_message_size: int
    permissions: InboxPermissions
    password: str | None
    last_message_sent_at: str | None
    created_at: str


class InboxParams(_Shape):
    """`{"inbox": {"name": ..., "email_username": ...}}` (create takes only the name)."""

    inbox: dict[str, Any] | None = None


class SmtpDataOut(BaseModel):
    mail_from_addr: str
    client_ip: str


class SmtpInformationOut(BaseModel):
    ok: bool
    data: SmtpDataOut | None = None


class SandboxMessageOut(BaseModel):
    """A kept message as the Python SDK's testing API `EmailMessage` (every field it requires).

    What we do not have is answered as Mailtrap's "nothing": no blacklist check was made
    (`blacklists_report_info: false`), and the SMTP details are not kept (`smtp_information.data`
    null). `message_id` is ours: the id `POST /api/send/{inbox_id}` answered."""

    id: int
    inbox_id: int
    subject: str
    sent_at: str
    from_email: str
    from_name: str
    to_email: str
    to_name: str
    email_size: int
    is_read: bool
    created_at: str
    updated_at: str
    html_body_size: int
    text_body_size: int
    human_size: str
    html_path: str
    txt_path: str
    raw_path: str
    download_path: str
    html_source_path: str
    blacklists_report_info: bool
    smtp_information: SmtpInformationOut
    message_id: str


class MessageUpdate(_Shape):
    """`{"message": {"is_read": true|"true"|false|"false"}}` (the SDK sends the string)."""

    message: dict[str, Any] | None = None
