"""templating: the Handlebars subset, one case per construct, and every malformed or hostile input.

The expected outputs of RENDERS were checked against handlebars.js 4.7 (`Handlebars.compile(t)`
for html=True, `Handlebars.compile(t, {noEscape: true})` for html=False).
"""

from __future__ import annotations

from typing import Any

import pytest

from mailtrap_smtp import templating
from mailtrap_smtp.templating import TemplateError, compile_template, render

ITEMS = {"items": ["a", "b", "c"]}
USER = {"user": {"name": "Ann", "address": {"city": "Oslo"}, "tags": ["x", "y"]}}

# (id, template, variables, html, expected)
RENDERS: list[tuple[str, str, dict[str, Any], bool, str]] = [
    ("text", "Hello, world", {}, True, "Hello, world"),
    ("variable", "Hi {{name}}!", {"name": "Ann"}, True, "Hi Ann!"),
    ("spaces_inside", "Hi {{ name }}!", {"name": "Ann"}, True, "Hi Ann!"),
    ("escaped_in_html", "{{v}}", {"v": "<a href=\"x\">&'`=</a>"}, True,
     "&lt;a href&#x3D;&quot;x&quot;&gt;&amp;&#x27;&#x60;&#x3D;&lt;/a&gt;"),
    ("not_escaped_in_text", "{{v}}", {"v": "<a href=\"x\">&'`=</a>"}, False, "<a href=\"x\">&'`=</a>"),
    ("triple_raw", "{{{v}}}", {"v": "<b>&</b>"}, True, "<b>&</b>"),
    ("ampersand_raw", "{{& v}}", {"v": "<b>&</b>"}, True, "<b>&</b>"),
    ("template_text_never_escaped", "<p>&amp; {{v}}</p>", {"v": "&"}, True, "<p>&amp; &amp;</p>"),
    ("missing", "[{{nope}}]", {}, True, "[]"),
    ("dotted", "{{user.address.city}}", USER, True, "Oslo"),
    ("slash_path", "{{user/name}}", USER, True, "Ann"),
    ("through_a_scalar", "[{{user.name.first}}]", USER, True, "[]"),
    ("list_index", "{{items.[1]}}", ITEMS, True, "b"),
    ("list_index_out_of_range", "[{{items.[9]}}]", ITEMS, True, "[]"),
    ("bracket_segment", "{{[first name]}}/{{user.[name]}}", {"first name": "F", **USER}, True, "F/Ann"),
    ("bracket_segment_in_block", "{{#with [the user]}}{{name}}{{/with}}", {"the user": {"name": "U"}}, True, "U"),
    ("this_prefix", "{{this.user.name}}", USER, True, "Ann"),
    ("numbers", "{{n}} {{f}} {{g}} {{neg}}", {"n": 3, "f": 2.0, "g": 2.5, "neg": -1}, True, "3 2 2.5 -1"),
    ("booleans_and_null", "{{t}} {{f}} [{{z}}]", {"t": True, "f": False, "z": None}, True, "true false []"),
    ("list_as_text", "{{l}}", {"l": [1, "a", None, True]}, True, "1,a,,true"),
    ("object_as_text", "{{o}}", {"o": {"a": 1}}, True, "[object Object]"),
    ("unicode", "{{n}}", {"n": "Zoë 🎉 ∑"}, True, "Zoë 🎉 ∑"),
    ("if_else_true", "{{#if x}}Y{{else}}N{{/if}}", {"x": "yes"}, True, "Y"),
    ("if_else_false", "{{#if x}}Y{{else}}N{{/if}}", {"x": False}, True, "N"),
    ("if_caret_else", "{{#if x}}Y{{^}}N{{/if}}", {}, True, "N"),
    ("if_without_else", "[{{#if x}}Y{{/if}}]", {}, True, "[]"),
    ("if_dotted", "{{#if user.address}}{{user.address.city}}{{/if}}", USER, True, "Oslo"),
    ("else_if_chain", "{{#if a}}A{{else if b}}B{{else}}C{{/if}}", {"b": 1}, True, "B"),
    ("else_if_chain_last", "{{#if a}}A{{else if b}}B{{else}}C{{/if}}", {}, True, "C"),
    ("unless", "{{#unless x}}U{{else}}E{{/unless}}", {"x": 0}, True, "U"),
    ("unless_truthy", "{{#unless x}}U{{else}}E{{/unless}}", {"x": [0]}, True, "E"),
    ("each_list", "{{#each items}}{{@index}}:{{this}} {{/each}}", ITEMS, True, "0:a 1:b 2:c "),
    ("each_dot", "{{#each items}}{{.}}{{/each}}", ITEMS, True, "abc"),
    ("each_first_last", "{{#each items}}{{#if @first}}[{{/if}}{{this}}{{#if @last}}]{{else}},{{/if}}{{/each}}",
     ITEMS, True, "[a,b,c]"),
    ("each_objects", "{{#each people}}{{name}}={{this.age}};{{/each}}",
     {"people": [{"name": "A", "age": 1}, {"name": "B", "age": 2}]}, True, "A=1;B=2;"),
    ("each_object_keys", "{{#each m}}{{@key}}={{this}}@{{@index}};{{/each}}", {"m": {"a": 1, "b": 2}}, True,
     "a=1@0;b=2@1;"),
    ("each_empty_else", "{{#each items}}x{{else}}none{{/each}}", {"items": []}, True, "none"),
    ("each_missing_else", "{{#each items}}x{{else}}none{{/each}}", {}, True, "none"),
    ("each_over_string", "{{#each s}}x{{else}}none{{/each}}", {"s": "abc"}, True, "none"),
    ("each_parent", "{{#each items}}{{../sep}}{{this}}{{/each}}", {"items": ["a", "b"], "sep": "-"}, True, "-a-b"),
    ("each_root", "{{#each items}}{{@root.sep}}{{/each}}", {"items": [1, 2], "sep": "|"}, True, "||"),
    ("each_nested", "{{#each rows}}[{{#each this}}{{this}}{{/each}}]{{/each}}", {"rows": [[1, 2], [3]]}, True,
     "[12][3]"),
    ("each_index_inside_with", "{{#each people}}{{#with this}}{{@index}}{{name}}{{/with}}{{/each}}",
     {"people": [{"name": "A"}, {"name": "B"}]}, True, "0A1B"),
    ("each_escapes", "{{#each items}}{{this}}{{/each}}", {"items": ["<", ">"]}, True, "&lt;&gt;"),
    ("with", "{{#with user}}{{name}} in {{address.city}}{{/with}}", USER, True, "Ann in Oslo"),
    ("with_parent", "{{#with user}}{{name}}{{../sep}}{{/with}}", {**USER, "sep": "!"}, True, "Ann!"),
    ("with_missing_else", "{{#with nobody}}{{name}}{{else}}nobody{{/with}}", {}, True, "nobody"),
    ("with_zero_is_present", "{{#with n}}[{{this}}]{{else}}E{{/with}}", {"n": 0}, True, "[0]"),
    ("with_empty_list_is_empty", "{{#with l}}[{{this}}]{{else}}E{{/with}}", {"l": []}, True, "E"),
    ("comment", "a{{! a comment }}b", {}, True, "ab"),
    ("long_comment", "a{{!-- has }} inside --}}b", {}, True, "ab"),
    ("escaped_mustache", "\\{{name}} {{name}}", {"name": "N"}, True, "{{name}} N"),
    ("whitespace_control", "a  {{~x~}}  b", {"x": "X"}, True, "aXb"),
    ("whitespace_control_newlines", "<p>\n  {{~#if t~}}\n  yes\n  {{~/if~}}\n</p>", {"t": 1}, True, "<p>yes</p>"),
    ("standalone_lines", "<ul>\n  {{#each items}}\n  <li>{{this}}</li>\n  {{/each}}\n</ul>\n", {"items": ["a", "b"]},
     True, "<ul>\n  <li>a</li>\n  <li>b</li>\n</ul>\n"),
    ("standalone_at_edges", "{{#if t}}\nX\n{{/if}}\n", {"t": True}, True, "X\n"),
    ("standalone_crlf", "{{#if t}}\r\nX\r\n{{else}}\r\nY\r\n{{/if}}\r\n", {"t": False}, True, "Y\r\n"),
    ("standalone_comment", "a\n  {{! note }}\nb", {}, True, "a\nb"),
    ("inline_block_not_standalone", "a {{#if t}}b{{/if}} c\n", {"t": True}, True, "a b c\n"),
    ("variable_line_kept", "  {{x}}\n", {"x": "X"}, True, "  X\n"),
]


@pytest.mark.parametrize(("template", "variables", "html", "expected"),
                         [c[1:] for c in RENDERS], ids=[c[0] for c in RENDERS])
def test_render(template: str, variables: dict[str, Any], html: bool, expected: str) -> None:
    assert render(template, variables, html=html) == expected


# Handlebars truthiness for #if (and its negation for #unless).
TRUTHINESS: list[tuple[Any, bool]] = [
    (True, True), (False, False), (None, False), ("", False), ("0", True), ("false", True), (0, False),
    (0.0, False), (1, True), (-1, True), (0.5, True), ([], False), ([0], True), ({}, True), ({"a": 0}, True),
    (float("nan"), False),
]


@pytest.mark.parametrize(("value", "truthy"), TRUTHINESS, ids=[repr(v) for v, _ in TRUTHINESS])
def test_truthiness(value: Any, truthy: bool) -> None:
    assert render("{{#if v}}T{{else}}F{{/if}}", {"v": value}, html=False) == ("T" if truthy else "F")
    assert render("{{#unless v}}F{{else}}T{{/unless}}", {"v": value}, html=False) == ("T" if truthy else "F")


# Number formatting as JavaScript's String(n) (checked with node for each value).
NUMBERS: list[tuple[float | int, str]] = [
    (0.1, "0.1"), (19.99, "19.99"), (1e21, "1e+21"), (1e20, "100000000000000000000"), (1.5e-7, "1.5e-7"),
    (0.000001, "0.000001"), (0.0000001, "1e-7"), (123456789012345680000.0, "123456789012345680000"),
    (-2.5, "-2.5"), (1e300, "1e+300"), (5e-324, "5e-324"), (2.0**53, "9007199254740992"), (10**22, "1e+22"),
    (3, "3"), (-0.0, "0"), (1 / 3, "0.3333333333333333"), (100.0, "100"), (1.2345e-5, "0.000012345"),
    (float("nan"), "NaN"), (float("inf"), "Infinity"), (float("-inf"), "-Infinity"),
]


@pytest.mark.parametrize(("value", "text"), NUMBERS, ids=[t for _, t in NUMBERS])
def test_numbers_print_as_javascript_does(value: float | int, text: str) -> None:
    assert render("{{n}}", {"n": value}, html=False) == text


def test_missing_variable_is_falsy() -> None:
    assert render("{{#if v}}T{{else}}F{{/if}}", {}, html=False) == "F"


def test_compiled_template_renders_many_times() -> None:
    t = compile_template("Hi {{name}}")
    assert [t.render({"name": n}, html=False) for n in ("a", "b")] == ["Hi a", "Hi b"]
    assert t.render(None, html=False) == "Hi "


def test_nesting_at_the_bound_renders() -> None:
    depth = templating.MAX_DEPTH
    assert render("{{#if a}}" * depth + "x" + "{{/if}}" * depth, {"a": 1}, html=False) == "x"


def nested(n: int) -> str:
    return "{{#if a}}" * n + "{{/if}}" * n


ERRORS: list[tuple[str, str, str]] = [
    ("unclosed_block", "{{#if a}}x", "line 1: {{#if}} is never closed with {{/if}}"),
    ("unclosed_block_line", "a\n\n{{#each x}}\n{{#if y}}{{/if}}", "line 3: {{#each}} is never closed with {{/each}}"),
    ("unclosed_else_if_names_the_block", "{{#if a}}{{else if b}}", "line 1: {{#if}} is never closed with {{/if}}"),
    ("mismatched_close", "{{#if a}}\n{{/each}}", "line 2: {{/each}} does not close {{#if}} of line 1"),
    ("stray_close", "x{{/if}}", "line 1: {{/if}} closes no block"),
    ("stray_else", "{{else}}", "line 1: {{else}} outside a block"),
    ("second_else", "{{#if a}}1{{else}}2{{else}}3{{/if}}", "line 1: a second {{else}} in {{#if}}"),
    ("unknown_helper", "{{#loop items}}{{/loop}}",
     "line 1: unknown block helper {{#loop}}: the supported ones are if, unless, each, with"),
    ("mustache_section", "{{#items}}x{{/items}}",
     "line 1: unknown block helper {{#items}}: the supported ones are if, unless, each, with"),
    ("two_arguments", "{{#if a b}}{{/if}}", "line 1: {{#if}} takes exactly one variable"),
    ("block_params", "{{#each items as |i|}}{{/each}}", "line 1: {{#each}} takes exactly one variable"),
    ("no_argument", "{{#with}}{{/with}}", "line 1: {{#with}} takes exactly one variable"),
    ("helper_call", "{{lookup a b}}", "line 1: {{lookup a b}}: helpers and arguments are not supported; "
     "only a variable path, or the block helpers if, unless, each, with"),
    ("empty_mustache", "{{}}", "line 1: {{}}: helpers and arguments are not supported; "
     "only a variable path, or the block helpers if, unless, each, with"),
    ("partial", "{{> footer}}", "line 1: partials ({{> name}}) are not supported"),
    ("inverse_section", "{{^items}}none{{/items}}",
     "line 1: inverse sections ({{^name}}) are not supported: use {{#unless name}}"),
    ("decorator", "{{* inline}}", "line 1: decorators are not supported"),
    ("string_literal", "{{'x'}}", "line 1: {{'x'}} is not a valid variable path"),
    ("empty_segment", "{{a..b}}", "line 1: {{a..b}} is not a valid variable path"),
    ("trailing_dot", "{{a.}}", "line 1: {{a.}} is not a valid variable path"),
    ("bare_index", "{{items.1}}", "line 1: {{items.1}}: write a list index in brackets, as items.[1]"),
    ("unclosed_bracket", "{{a.[b}}", "line 1: {{a.[b}} is not a valid variable path"),
    ("unknown_data", "{{@foo}}", "line 1: unknown data variable @foo"),
    ("data_fields", "{{@index.x}}", "line 1: @index has no fields"),
    ("unclosed_mustache", "ok\n{{name", "line 2: '{{' is never closed with '}}'"),
    ("unclosed_triple", "{{{name}}", "line 1: '{{{' is never closed with '}}}'"),
    ("unclosed_comment", "{{!-- never", "line 1: comment '{{!--' is never closed with '--}}'"),
    ("too_deep", nested(templating.MAX_DEPTH + 1), "line 1: blocks are nested more than 32 deep"),
    ("too_deep_by_else_if", "{{#if a}}" * 31 + "{{#if b}}{{else if c}}" + "{{/if}}" * 32,
     "line 1: blocks are nested more than 32 deep"),
    ("too_long", "x" * (templating.MAX_SOURCE_CHARS + 1), "the template is longer than 2000000 characters"),
]


@pytest.mark.parametrize(("template", "message"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_compile_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as e:
        compile_template(template)
    assert str(e.value) == message


def _nested_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


HOSTILE_RENDERS: list[tuple[str, str, dict[str, Any], str]] = [
    ("huge_each", "{{#each l}}{{this}}{{/each}}", {"l": ["x"] * 300_000},
     "the template takes more than 200000 steps to render"),
    ("huge_each_empty_body", "{{#each l}}{{/each}}", {"l": ["x"] * 300_000},
     "the template takes more than 200000 steps to render"),
    ("multiplying_eaches", "{{#each a}}{{#each ../a}}{{#each ../../a}}x{{/each}}{{/each}}{{/each}}",
     {"a": list(range(100))}, "the template takes more than 200000 steps to render"),
    ("huge_output", "{{{x}}}" * 11, {"x": "y" * (1024 * 1024)},
     "the rendered template is larger than 10485760 characters"),
    ("huge_list_as_text", "{{x}}", {"x": [None] * (10 * 1024 * 1024 + 1)},
     "the rendered template is larger than 10485760 characters"),
    ("deeply_nested_list_as_text", "{{x}}", {"x": _nested_list(1000)},
     "a list in the variables is nested more than 32 deep"),
    ("huge_integer", "{{x}}", {"x": 10**400}, "a number in the variables is too large"),
]


@pytest.mark.parametrize(("template", "variables", "message"), [c[1:] for c in HOSTILE_RENDERS],
                         ids=[c[0] for c in HOSTILE_RENDERS])
def test_render_is_bounded(template: str, variables: dict[str, Any], message: str) -> None:
    t = compile_template(template)
    with pytest.raises(TemplateError) as e:
        t.render(variables, html=True)
    assert str(e.value) == message


def test_pathological_input_fails_at_its_first_tag() -> None:
    # The shapes that make a backtracking lexer quadratic (many openers, no closer): each must be
    # refused at its first tag, having searched for the missing delimiter once.
    for source in ("{{!-- }}" * 100_000, "{{a" * 200_000 + "}}", "{{{" * 200_000):
        with pytest.raises(TemplateError):
            compile_template(source)


def test_variables_are_not_python_objects() -> None:
    # Only JSON shapes are walked: attributes of other objects are never read.
    class Secret:
        token = "s3cret"

    assert render("[{{o.token}}][{{o.__class__}}]", {"o": Secret()}, html=False) == "[][]"

