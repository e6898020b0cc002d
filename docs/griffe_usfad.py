"""Griffe extension: render usfad's docstrings (reST-flavoured prose) as Markdown for mkdocstrings.

usfad's docstrings are not in one of the parsers' styles, so this rewrites, before parsing:

- Sphinx roles (``:class:`~usfad.errors.DataError```, ``:func:`build_flow```, ``:mod:``, ``:meth:``,
  ``:data:``, ...) into *optional* cross-references: a link where the target is rendered on the
  site, plain code where it is not (a private helper, a torch class), never a warning;
- "Parameters" sections underlined with dashes, whose entries are ``name[, name...]: text``
  with indented continuation lines, into a bullet list (the numpy parser would drop the first
  line of every description and warn about entries such as "Other parameters as in ...");
- ``>>>`` lines into a ``pycon`` code block (without ``# doctest:`` directives);
- a line ending in ``::`` (reST's literal-block marker) into one ending in ``:``.

Loaded by mkdocs.yml (``plugins.mkdocstrings.handlers.python.options.extensions``).
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(class|func|meth|mod|attr|data|exc|obj|const|type):`([^`]+)`")
UNDERLINE = re.compile(r"^\s*-{3,}\s*$")
ENTRY = re.compile(r"^([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*:(?:\s+(.*))?$")
DOCTEST_DIRECTIVE = re.compile(r"\s*#\s*doctest:.*$")


def _identifier(obj: griffe.Object, target: str) -> str:
    """The full path of ``target`` as seen from ``obj``'s scope (``target`` itself if unknown)."""
    if target.startswith("usfad.") or target == "usfad":
        return target
    head, _, rest = target.partition(".")
    scope: Any = obj
    while scope is not None:
        try:
            full = scope.resolve(head)
        except Exception:  # griffe.NameResolutionError, or an alias that cannot be followed
            try:
                inherited = scope.inherited_members if scope.is_class else {}
            except Exception:  # a base class outside the loaded packages
                inherited = {}
            if head not in inherited:
                scope = scope.parent
                continue
            full = f"{scope.path}.{head}"  # documented on the subclass with inherited_members
        return f"{full}.{rest}" if rest else full
    return target


def _role(obj: griffe.Object, match: re.Match[str]) -> str:
    text = match.group(2).strip()
    title, target = text, text
    explicit = re.fullmatch(r"(.*?)\s*<([^>]+)>", text)
    if explicit:
        title, target = explicit.group(1), explicit.group(2)
    target = target.lstrip("~").removesuffix("()")
    if not explicit:
        shown = text.removesuffix("()")
        title = shown.lstrip("~").rsplit(".", 1)[-1] if shown.startswith("~") else shown
        if text.endswith("()"):
            title += "()"
    identifier = html.escape(_identifier(obj, target), quote=True)
    return f'<autoref identifier="{identifier}" optional><code>{html.escape(title)}</code></autoref>'


def _parameters(lines: list[str]) -> list[str]:
    """Underlined "Parameters" blocks -> a bold label and a bullet list."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if i + 1 < len(lines) and line.strip() and UNDERLINE.match(lines[i + 1]) and not UNDERLINE.match(line):
            out += [f"**{line.strip()}**", ""]
            i += 2
            indent = None
            while i < len(lines) and lines[i].strip():
                body = lines[i]
                depth = len(body) - len(body.lstrip())
                indent = depth if indent is None else indent
                entry = ENTRY.match(body.strip()) if depth <= indent else None
                if entry:
                    names = ", ".join(f"`{n.strip()}`" for n in entry.group(1).split(","))
                    out.append(f"- {names}: {entry.group(2) or ''}".rstrip())
                elif depth > indent and out and out[-1].startswith(("- ", "  ")):
                    out.append("  " + body.strip())
                else:  # a sentence after the entries, e.g. "Other parameters as in ..."
                    out += ["", body.strip()]
                i += 1
            continue
        out.append(line)
        i += 1
    return out


def _doctests(lines: list[str]) -> list[str]:
    out: list[str] = []
    in_block = False
    for line in lines:
        is_prompt = line.lstrip().startswith((">>>", "... ")) or line.strip() == "..."
        if is_prompt and not in_block:
            out += ["```pycon"]
            in_block = True
        elif in_block and not line.strip():
            out += ["```"]
            in_block = False
        out.append(DOCTEST_DIRECTIVE.sub("", line) if in_block else line)
    if in_block:
        out.append("```")
    return out


def to_markdown(obj: griffe.Object, text: str) -> str:
    lines = text.split("\n")
    lines = _doctests(_parameters(lines))
    lines = [line[:-1] if line.endswith("::") and line.strip() != "::" else line for line in lines]
    return ROLE.sub(lambda m: _role(obj, m), "\n".join(lines))


def _walk(obj: Any, seen: set[int]) -> None:
    if id(obj) in seen or obj.is_alias:
        return
    seen.add(id(obj))
    if obj.docstring is not None:
        obj.docstring.value = to_markdown(obj, obj.docstring.value)
    for member in obj.members.values():
        _walk(member, seen)


class UsfadDocstrings(griffe.Extension):
    """Rewrite every docstring of the loaded package once it is fully loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        _walk(pkg, set())
