"""A Handlebars subset for email templates: compile once, render with JSON variables. Pure, no I/O.

Supported, with Handlebars semantics (https://handlebarsjs.com/guide/, which Mailtrap's
`email-templates/handlebars.md` refers to):

* `{{path}}`, HTML-escaped when rendering HTML (Handlebars' `escapeExpression`), and `{{{path}}}` /
  `{{&path}}` raw; a missing value renders as nothing;
* paths: `a.b.c` (also `a/b`), `this`, `.`, `this.a`, `../a` (the context outside the enclosing
  `each` / `with`), `@index`, `@key`, `@first`, `@last`, `@root.a`; a number segment indexes a list;
* blocks `{{#if x}}…{{else}}…{{/if}}` (and `{{else if y}}` chains), `{{#unless x}}`,
  `{{#each list}}` over lists and objects (`{{else}}` when empty), `{{#with obj}}` (`{{else}}` when
  empty). Truthiness is Handlebars': false, null or missing, "", 0 and [] are falsy, {} is truthy;
  `with` and `each` treat 0 as present, like Handlebars' `isEmpty`;
* comments `{{! … }}` and `{{!-- … --}}`, `\\{{` for a literal `{{`, whitespace control `{{~ ~}}`,
  and Handlebars' standalone rule (a block tag alone on its line takes that line with it).

Anything else (partials, helpers with arguments, block parameters, literals, unknown helpers) is
refused when the template is compiled. Every problem is a `TemplateError` whose message names the
line. Rendering is bounded (nesting depth, steps, output size), so a hostile template or variable
set costs a bounded amount of CPU and memory.
"""

from __future__ import annotations

import decimal
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_SOURCE_CHARS = 2_000_000
MAX_DEPTH = 32  # blocks nested in one another
MAX_OUTPUT_CHARS = 10 * 1024 * 1024
MAX_STEPS = 200_000  # nodes rendered and `each` iterations (a body counts again in each iteration)

BLOCK_HELPERS = ("if", "unless", "each", "with")
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;",
                          "`": "&#x60;", "=": "&#x3D;"})
# Handlebars' ID: any run of characters but whitespace and these (its lexer's ID rule).
_PATH_SEGMENT = re.compile(r"\[([^\]]*)\]|([^\s!\"#%&'()*+,./;<=>@\[\\\]^`{|}~]+)")
_BRACKETED = re.compile(r"\[[^\]]*\]")
_DATA_NAMES = ("index", "key", "first", "last", "root")
_COMMENT_END = re.compile(r"--(~)?\}\}")
_TRIPLE_END = re.compile(r"\}(~)?\}\}")


class TemplateError(ValueError):
    """A template that cannot be compiled or rendered; the message is fit for the template's author."""


# ---------------------------------------------------------------- the tree


@dataclass(frozen=True)
class _Path:
    up: int = 0  # how many `../`
    data: str | None = None  # the name of an @data variable
    parts: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Var:
    path: _Path
    raw: bool


@dataclass
class _Block:
    helper: str
    path: _Path
    line: int
    body: list[_Node] = field(default_factory=list)
    inverse: list[_Node] = field(default_factory=list)
    in_inverse: bool = False
    chained: bool = False  # opened by `{{else if}}`: closed by its parent's `{{/if}}`


_Node = str | _Var | _Block


# ---------------------------------------------------------------- lexing


@dataclass
class _Tag:
    kind: str  # var | raw | comment | open | else | close
    content: str
    line: int
    lstrip: bool
    rstrip: bool


_UNSUPPORTED = {">": "partials ({{> name}}) are not supported", "^": "inverse sections ({{^name}}) are not "
                "supported: use {{#unless name}}", "*": "decorators are not supported"}


def _classify(body: str, line: int, lstrip: bool, rstrip: bool) -> _Tag:
    body = body.strip()
    if body[:1] in _UNSUPPORTED and body != "^":
        raise TemplateError(f"line {line}: {_UNSUPPORTED[body[:1]]}")
    for sigil, kind in (("!", "comment"), ("#", "open"), ("/", "close"), ("&", "raw")):
        if body.startswith(sigil):
            return _Tag(kind, "" if kind == "comment" else body[1:].strip(), line, lstrip, rstrip)
    if body == "^" or body == "else" or body[:5] in ("else ", "else\t", "else\n", "else\r"):
        return _Tag("else", body[4:].strip() if body != "^" else "", line, lstrip, rstrip)
    return _Tag("var", body, line, lstrip, rstrip)


def _read_tag(source: str, start: int, line: int) -> tuple[_Tag, int]:
    """The tag opening at `start`, and where it ends. Each closing delimiter is searched for
    once and its absence is an error, so lexing is linear in the template's length."""
    i = start + 2
    lstrip = source.startswith("~", i)
    i += lstrip
    if source.startswith("!--", i):
        m = _COMMENT_END.search(source, i + 3)
        if m is None:
            raise TemplateError(f"line {line}: comment '{{{{!--' is never closed with '--}}}}'")
        return _Tag("comment", "", line, lstrip, m[1] is not None), m.end()
    if source.startswith("{", i):
        m = _TRIPLE_END.search(source, i + 1)
        if m is None:
            raise TemplateError(f"line {line}: '{{{{{{' is never closed with '}}}}}}'")
        return _Tag("raw", source[i + 1:m.start()].strip(), line, lstrip, m[1] is not None), m.end()
    end = source.find("}}", i)
    if end < 0:
        raise TemplateError(f"line {line}: '{{{{' is never closed with '}}}}'")
    body = source[i:end]
    rstrip = body.endswith("~")
    return _classify(body[:-1] if rstrip else body, line, lstrip, rstrip), end + 2


def _lex(source: str) -> list[str | _Tag]:
    """Alternating text and tags, starting and ending with text (maybe empty)."""
    out: list[str | _Tag] = []
    text: list[str] = []
    pos, line = 0, 1
    while (start := source.find("{{", pos)) >= 0:
        line += source.count("\n", pos, start)
        if start > 0 and source[start - 1] == "\\":  # `\{{…}}` is text, without the backslash
            end = source.find("}}", start + 2)
            end = len(source) if end < 0 else end + 2
            text.append(source[pos:start - 1] + source[start:end])
        else:
            text.append(source[pos:start])
            tag, end = _read_tag(source, start, line)
            out.extend(["".join(text), tag])
            text = []
        line += source.count("\n", start, end)
        pos = end
    text.append(source[pos:])
    out.append("".join(text))
    return out


_STANDALONE_KINDS = ("comment", "open", "else", "close")


def _trim_lines(tokens: list[str | _Tag]) -> None:
    """Handlebars' standalone rule, decided on the untouched text: a block or comment tag with only
    blanks around it on its line removes those blanks and the line break."""
    last = len(tokens) - 2
    cut_start = [0] * len(tokens)
    cut_end = [len(t) if isinstance(t, str) else 0 for t in tokens]
    for i in range(1, len(tokens) - 1, 2):
        tag, before, after = tokens[i], tokens[i - 1], tokens[i + 1]
        assert isinstance(tag, _Tag) and isinstance(before, str) and isinstance(after, str)
        if tag.kind not in _STANDALONE_KINDS:
            continue
        line_start = before.rfind("\n") + 1
        if before[line_start:].strip(" \t") or (line_start == 0 and i != 1):
            continue
        blank = re.match(r"[ \t]*(\r?\n)?", after)
        assert blank is not None
        if blank.group(1) is None and (blank.end() != len(after) or i != last):
            continue
        cut_end[i - 1] = min(cut_end[i - 1], line_start)
        cut_start[i + 1] = blank.end()
    for i in range(0, len(tokens), 2):
        text = tokens[i]
        assert isinstance(text, str)
        tokens[i] = text[cut_start[i]:max(cut_start[i], cut_end[i])]


def _strip_whitespace(tokens: list[str | _Tag]) -> None:
    """`{{~` and `~}}`: every whitespace character on that side goes, line breaks included."""
    for i in range(1, len(tokens) - 1, 2):
        tag = tokens[i]
        assert isinstance(tag, _Tag)
        before, after = tokens[i - 1], tokens[i + 1]
        assert isinstance(before, str) and isinstance(after, str)
        if tag.lstrip:
            tokens[i - 1] = before.rstrip()
        if tag.rstrip:
            tokens[i + 1] = after.lstrip()


# ---------------------------------------------------------------- parsing


def _outside_brackets(text: str) -> str:
    return _BRACKETED.sub("", text)


def _path(text: str, line: int) -> _Path:
    original = text
    if not text or any(c.isspace() for c in _outside_brackets(text)):
        raise TemplateError(f"line {line}: {{{{{original}}}}}: helpers and arguments are not supported; "
                            "only a variable path, or the block helpers if, unless, each, with")
    data: str | None = None
    if text.startswith("@"):
        name, _, text = text[1:].partition(".")
        if name not in _DATA_NAMES:
            raise TemplateError(f"line {line}: unknown data variable @{name}")
        if name != "root" and text:
            raise TemplateError(f"line {line}: @{name} has no fields")
        data = name
    up = 0
    while text.startswith("../"):
        up, text = up + 1, text[3:]
    if text in ("this", ".", ".."):
        up += text == ".."
        text = ""
    elif text.startswith(("this.", "this/")):
        text = text[5:]
    return _Path(up=up, data=data, parts=_segments(text, original, line))


def _segments(text: str, original: str, line: int) -> tuple[str, ...]:
    """`a.b/[c d].[0]` -> ("a", "b", "c d", "0"): Handlebars' ID and `[literal]` segments."""
    parts: list[str] = []
    pos = 0
    while pos < len(text):
        m = _PATH_SEGMENT.match(text, pos)
        if m is None or m[0] == "this":
            raise TemplateError(f"line {line}: {{{{{original}}}}} is not a valid variable path")
        if m[2] is not None and m[2].isdigit():
            raise TemplateError(f"line {line}: {{{{{original}}}}}: write a list index in brackets, "
                                f"as {original.replace('.' + m[2], '.[' + m[2] + ']', 1)}")
        parts.append(m[1] if m[1] is not None else m[2])
        pos = m.end()
        if pos < len(text):
            if text[pos] not in "./" or pos + 1 == len(text):
                raise TemplateError(f"line {line}: {{{{{original}}}}} is not a valid variable path")
            pos += 1
    return tuple(parts)


def _parse(tokens: list[str | _Tag]) -> list[_Node]:
    root: list[_Node] = []
    stack: list[_Block] = []

    def target() -> list[_Node]:
        if not stack:
            return root
        top = stack[-1]
        return top.inverse if top.in_inverse else top.body

    for tok in tokens:
        if isinstance(tok, str):
            if tok:
                target().append(tok)
        elif tok.kind in ("var", "raw"):
            target().append(_Var(_path(tok.content, tok.line), raw=tok.kind == "raw"))
        elif tok.kind == "open":
            block = _open(tok, len(stack))
            target().append(block)
            stack.append(block)
        elif tok.kind == "else":
            _else(tok, stack)
        elif tok.kind == "close":
            _close(tok, stack)
    if stack:
        opener = next(b for b in reversed(stack) if not b.chained)
        raise TemplateError(f"line {opener.line}: {{{{#{opener.helper}}}}} is never closed with "
                            f"{{{{/{opener.helper}}}}}")
    return root


def _open(tok: _Tag, depth: int) -> _Block:
    words = tok.content.split(None, 1)
    helper = words[0] if words else ""
    arg = words[1].strip() if len(words) == 2 else ""
    if depth >= MAX_DEPTH:
        raise TemplateError(f"line {tok.line}: blocks are nested more than {MAX_DEPTH} deep")
    if helper not in BLOCK_HELPERS:
        raise TemplateError(f"line {tok.line}: unknown block helper {{{{#{helper}}}}}: "
                            "the supported ones are if, unless, each, with")
    if not arg or any(c.isspace() for c in _outside_brackets(arg)):
        raise TemplateError(f"line {tok.line}: {{{{#{helper}}}}} takes exactly one variable")
    return _Block(helper, _path(arg, tok.line), tok.line)


def _else(tok: _Tag, stack: list[_Block]) -> None:
    if not stack:
        raise TemplateError(f"line {tok.line}: {{{{else}}}} outside a block")
    top = stack[-1]
    if top.in_inverse:
        raise TemplateError(f"line {tok.line}: a second {{{{else}}}} in {{{{#{top.helper}}}}}")
    top.in_inverse = True
    if not tok.content:
        return
    # `{{else if x}}`: an if block as the whole inverse, closed by the outer `{{/…}}`.
    chained = _open(_Tag("open", tok.content, tok.line, False, False), len(stack))
    chained.chained = True
    top.inverse.append(chained)
    stack.append(chained)


def _close(tok: _Tag, stack: list[_Block]) -> None:
    if not stack:
        raise TemplateError(f"line {tok.line}: {{{{/{tok.content}}}}} closes no block")
    while stack[-1].chained:
        stack.pop()
    top = stack.pop()
    if tok.content != top.helper:
        raise TemplateError(f"line {tok.line}: {{{{/{tok.content}}}}} does not close "
                            f"{{{{#{top.helper}}}}} of line {top.line}")


# ---------------------------------------------------------------- rendering


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value is None or value == "" or (isinstance(value, list | tuple) and not value):
        return False
    if isinstance(value, int | float):
        return value != 0 and not (isinstance(value, float) and math.isnan(value))
    return True


def _empty(value: Any) -> bool:
    """Handlebars' `isEmpty`: what `with` and `each` skip (0 is not empty)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return False
    return not _truthy(value)


def _number(x: float) -> str:
    """ECMAScript's Number::toString (what Handlebars prints): the shortest round-trip digits, which
    Python's repr also finds, laid out by the JavaScript rules (ECMA-262 §6.1.6.1.20)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    sign, digit_tuple, exponent = decimal.Decimal(repr(x)).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    exponent += len("".join(map(str, digit_tuple))) - len(digits)
    k, n = len(digits), len(digits) + exponent
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = n - 1
        text = (digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e > 0 else "-") + str(abs(e)))
    return ("-" if sign else "") + text


def _text(value: Any, depth: int = 0) -> str:
    """JavaScript's string conversion, which is what Handlebars prints."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if value.bit_length() > 1000:  # past JavaScript's range; Python refuses str() of huge ints
            raise TemplateError("a number in the variables is too large")
        return str(value) if abs(value) < 10**21 else _number(float(value))
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        # Array.prototype.join, bounded: the commas alone of a longer list exceed the output bound.
        if depth >= MAX_DEPTH:
            raise TemplateError(f"a list in the variables is nested more than {MAX_DEPTH} deep")
        if len(value) > MAX_OUTPUT_CHARS:
            raise TemplateError(f"the rendered template is larger than {MAX_OUTPUT_CHARS} characters")
        return ",".join(_text(v, depth + 1) for v in value)
    return "[object Object]"


@dataclass
class _Frame:
    context: Any
    data: Mapping[str, Any]


class _Render:
    def __init__(self, variables: Any, html: bool) -> None:
        self.html = html
        self.steps = 0
        self.size = 0
        self.out: list[str] = []
        self.frames = [_Frame(variables, {"root": variables})]

    def emit(self, text: str) -> None:
        self.size += len(text)
        if self.size > MAX_OUTPUT_CHARS:
            raise TemplateError(f"the rendered template is larger than {MAX_OUTPUT_CHARS} characters")
        self.out.append(text)

    def lookup(self, path: _Path) -> Any:
        if path.up >= len(self.frames):
            return None
        frame = self.frames[-1 - path.up]
        value = frame.data.get(path.data) if path.data is not None else frame.context
        for part in path.parts:
            if isinstance(value, Mapping):
                value = value.get(part)
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return None
        return value

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise TemplateError(f"the template takes more than {MAX_STEPS} steps to render")

    def nodes(self, nodes: list[_Node]) -> None:
        for node in nodes:
            self.step()
            if isinstance(node, str):
                self.emit(node)
            elif isinstance(node, _Var):
                text = _text(self.lookup(node.path))
                self.emit(text if node.raw or not self.html else text.translate(_ESCAPES))
            else:
                self.block(node)

    def block(self, block: _Block) -> None:
        value = self.lookup(block.path)
        if block.helper in ("if", "unless"):
            self.nodes(block.body if _truthy(value) == (block.helper == "if") else block.inverse)
        elif block.helper == "with":
            if _empty(value):
                self.nodes(block.inverse)
            else:
                self.within(value, {}, block.body)
        else:
            self.each(block, value)

    def within(self, context: Any, data: Mapping[str, Any], body: list[_Node]) -> None:
        self.frames.append(_Frame(context, {**self.frames[-1].data, **data}))
        try:
            self.nodes(body)
        finally:
            self.frames.pop()

    def each(self, block: _Block, value: Any) -> None:
        # Iterated in place (never copied): the step bound stops a huge list early.
        keyed = isinstance(value, Mapping)
        if not (keyed or isinstance(value, list | tuple)) or not value:
            self.nodes(block.inverse)  # Handlebars iterates objects only: a string renders {{else}}
            return
        last = len(value) - 1
        for i, (key, item) in enumerate(value.items() if keyed else enumerate(value)):
            self.step()  # an iteration counts even when its body is empty
            data = {"index": i, "first": i == 0, "last": i == last}
            if keyed:
                data["key"] = key
            self.within(item, data, block.body)


# ---------------------------------------------------------------- API


@dataclass(frozen=True)
class Template:
    nodes: tuple[_Node, ...]

    def render(self, variables: Mapping[str, Any] | None, *, html: bool) -> str:
        """The output for these variables; `html` escapes `{{x}}` (never `{{{x}}}`)."""
        r = _Render({} if variables is None else variables, html)
        r.nodes(list(self.nodes))
        return "".join(r.out)


def compile_template(source: str) -> Template:
    """Parse once; raises `TemplateError` for anything outside the subset or malformed."""
    if len(source) > MAX_SOURCE_CHARS:
        raise TemplateError(f"the template is longer than {MAX_SOURCE_CHARS} characters")
    tokens = _lex(source)
    _trim_lines(tokens)
    _strip_whitespace(tokens)
    return Template(tuple(_parse(tokens)))


def render(source: str, variables: Mapping[str, Any] | None, *, html: bool) -> str:
    return compile_template(source).render(variables, html=html)
