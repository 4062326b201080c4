"""Email templates use case: create, list, get, update and delete an account's templates, and render
one for a `template_uuid` send (MAILTRAP_COMPAT §7.3).

Shared by the CLI and the HTTP API. Templates are checked when saved: the subject and both bodies
must compile (`templating`), so a broken template is refused with the line at fault instead of
failing each send. Rendering compiles at most once per template version (a small cache keyed by
id and `updated_at`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import templating
from ..store import templates as templates_store
from ..submission import CATEGORY_MAX
from ..templating import Template, TemplateError
from .refusal import Kind, Refused

NAME_MAX = 255
SUBJECT_MAX = 998  # one header line (RFC 5322 §2.1.1)
REQUIRED = ("name", "subject", "category")
BODIES = ("body_text", "body_html")
_MAX_LENGTH = {"name": NAME_MAX, "subject": SUBJECT_MAX, "category": CATEGORY_MAX,
               "body_text": templating.MAX_SOURCE_CHARS, "body_html": templating.MAX_SOURCE_CHARS}
CACHE_SIZE = 256


class TemplateNotFound(Refused):
    """No template with that id or uuid in the account."""

    kind = Kind.NOT_FOUND

    def __init__(self, key: object) -> None:
        super().__init__(f"no template {str(key)!r} in this account")


class TemplateInvalid(Refused):
    """Refused values: `errors` maps each field to its messages (the shape of a 422 body)."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k} {m}" for k, ms in errors.items() for m in ms))
        self.errors = errors


@dataclass(frozen=True)
class EmailTemplate:
    """Mailtrap's EmailTemplate object."""

    id: int
    uuid: uuid.UUID
    name: str
    subject: str
    category: str
    body_text: str | None
    body_html: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str | None
    html: str | None
    category: str
    template_id: int


def _template(row: Any) -> EmailTemplate:
    return EmailTemplate(**{f.name: row[f.name] for f in dataclasses.fields(EmailTemplate)})


def _check(values: Mapping[str, Any], *, creating: bool) -> dict[str, str | None]:
    """The template fields among `values` (others are ignored), validated; raises TemplateInvalid."""
    errors: dict[str, list[str]] = {}
    clean: dict[str, str | None] = {}
    for name in templates_store.FIELDS:
        if name not in values and not (creating and name in REQUIRED):
            continue
        value = values.get(name)
        if value is not None and not isinstance(value, str):
            errors[name] = ["must be a string"]
        elif name in REQUIRED and (value is None or not value.strip()):
            errors[name] = ["can't be blank"]
        elif value is not None and len(value) > _MAX_LENGTH[name]:
            errors[name] = [f"is too long (maximum is {_MAX_LENGTH[name]} characters)"]
        elif value is not None and name in ("subject", "category") and ("\r" in value or "\n" in value):
            errors[name] = ["must be one line"]
        else:
            clean[name] = value
            if value is not None and name not in ("name", "category"):
                try:
                    templating.compile_template(value)
                except TemplateError as e:
                    errors[name] = [str(e)]
    if errors:
        raise TemplateInvalid(errors)
    return clean


def _one_line(text: str) -> str:
    # A variable may hold a line break; a Subject is one header line (RFC 5322 §2.2), and a line
    # break in it would start a new header field.
    return " ".join(text.splitlines()) if "\r" in text or "\n" in text else text


class Templates:
    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._compiled: OrderedDict[tuple[int, dt.datetime], tuple[Template, Template | None, Template | None]] = (
            OrderedDict())

    async def create(self, account_id: int, values: Mapping[str, Any]) -> EmailTemplate:
        """`values`: name, subject, category (required), body_text, body_html. Raises TemplateInvalid."""
        row = await templates_store.create(self._pool, account_id, uuid.uuid4(), _check(values, creating=True))
        return _template(row)

    async def list_all(self, account_id: int) -> list[EmailTemplate]:
        return [_template(r) for r in await templates_store.list_for_account(self._pool, account_id)]

    async def page(self, account_id: int, number: int, size: int) -> tuple[list[EmailTemplate], bool]:
        """Page `number` (from 1) of `size` templates, oldest first, and whether another page follows."""
        rows = await templates_store.page_for_account(self._pool, account_id, offset=(number - 1) * size,
                                                      limit=size + 1)
        return [_template(r) for r in rows[:size]], len(rows) > size

    async def get(self, account_id: int, template_id: int) -> EmailTemplate:
        row = await templates_store.get(self._pool, account_id, template_id)
        if row is None:
            raise TemplateNotFound(template_id)
        return _template(row)

    async def get_by_uuid(self, account_id: int, template_uuid: uuid.UUID | str) -> EmailTemplate:
        row = await self._row_by_uuid(account_id, template_uuid)
        return _template(row)

    async def find(self, account_id: int, key: str) -> EmailTemplate:
        """By id (all digits) or uuid, as people name a template on the command line."""
        if key.isdigit():
            return await self.get(account_id, int(key))
        return await self.get_by_uuid(account_id, key)

    async def update(self, account_id: int, template_id: int, values: Mapping[str, Any]) -> EmailTemplate:
        """Change the fields given in `values` (a PATCH). Raises TemplateInvalid, TemplateNotFound."""
        row = await templates_store.update(self._pool, account_id, template_id, _check(values, creating=False))
        if row is None:
            raise TemplateNotFound(template_id)
        return _template(row)

    async def delete(self, account_id: int, template_id: int) -> EmailTemplate:
        row = await templates_store.delete(self._pool, account_id, template_id)
        if row is None:
            raise TemplateNotFound(template_id)
        return _template(row)

    async def render(self, account_id: int, template_uuid: uuid.UUID | str,
                     variables: Mapping[str, Any] | None) -> Rendered:
        """Subject and text rendered as text, html with `{{x}}` HTML-escaped. Raises TemplateNotFound,
        TemplateError (variables not an object, or a render bound exceeded)."""
        if variables is not None and not isinstance(variables, Mapping):
            raise TemplateError("template_variables must be an object")
        row = await self._row_by_uuid(account_id, template_uuid)
        subject, text, html = self._compile(row)
        return Rendered(
            subject=_one_line(subject.render(variables, html=False)),
            text=None if text is None else text.render(variables, html=False),
            html=None if html is None else html.render(variables, html=True),
            category=row["category"], template_id=int(row["id"]),
        )

    async def _row_by_uuid(self, account_id: int, template_uuid: uuid.UUID | str) -> Any:
        try:
            key = template_uuid if isinstance(template_uuid, uuid.UUID) else uuid.UUID(str(template_uuid))
        except ValueError:
            raise TemplateNotFound(template_uuid) from None
        row = await templates_store.get_by_uuid(self._pool, account_id, key)
        if row is None:
            raise TemplateNotFound(template_uuid)
        return row

    def _compile(self, row: Any) -> tuple[Template, Template | None, Template | None]:
        key = (int(row["id"]), row["updated_at"])
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = (templating.compile_template(row["subject"]),
                        None if row["body_text"] is None else templating.compile_template(row["body_text"]),
                        None if row["body_html"] is None else templating.compile_template(row["body_html"]))
            self._compiled[key] = compiled
            if len(self._compiled) > CACHE_SIZE:
                self._compiled.popitem(last=False)
        else:
            self._compiled.move_to_end(key)
        return compiled
