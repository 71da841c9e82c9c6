"""``--cfg-options key=value`` parsing with MMEngine's ``DictAction`` grammar, as literals only.

``a.b=1`` sets a nested key; ``k=1,2,3`` gives a list; ``k="[a,b]"`` a list; ``k="(1,2)"`` a tuple;
``k="[(a,b),(c,d)]"`` nests; ``true``/``false`` (any case) are booleans, ``None`` is None, numbers become int or
float and anything else stays a string. Nothing is evaluated as code.
"""
from __future__ import annotations

import argparse
from typing import Any, Dict, List, Sequence


def _parse_scalar(text: str) -> Any:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in '\'"':
        return text[1:-1]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in ('true', 'false'):
        return text.lower() == 'true'
    if text == 'None':
        return None
    return text


def _split_top_level(text: str) -> List[str]:
    """Split on commas that are not inside brackets or quotes."""
    parts, depth, quote, start = [], 0, '', 0
    for i, ch in enumerate(text):
        if quote:
            quote = '' if ch == quote else quote
        elif ch in '\'"':
            quote = ch
        elif ch in '([':
            depth += 1
        elif ch in ')]':
            depth -= 1
            if depth < 0:
                raise ValueError(f'unbalanced brackets in {text!r}')
        elif ch == ',' and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0 or quote:
        raise ValueError(f'unbalanced brackets or quotes in {text!r}')
    parts.append(text[start:])
    return parts


def _closing_index(text: str) -> int:
    """Index of the bracket that closes ``text[0]`` (-1 if none)."""
    depth, quote = 0, ''
    for i, ch in enumerate(text):
        if quote:
            quote = '' if ch == quote else quote
        elif ch in '\'"':
            quote = ch
        elif ch in '([':
            depth += 1
        elif ch in ')]':
            depth -= 1
            if depth == 0:
                return i
    return -1


def _strip_unquoted_spaces(text: str) -> str:
    out, quote = [], ''
    for ch in text:
        if quote:
            quote = '' if ch == quote else quote
        elif ch in '\'"':
            quote = ch
        elif ch.isspace():
            continue
        out.append(ch)
    return ''.join(out)


def parse_value(text: str) -> Any:
    """Parse one ``--cfg-options`` value into int/float/bool/None/str, list or tuple."""
    text = _strip_unquoted_spaces(text)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in '\'"' and text[1:2] in '([':
        text = text[1:-1]  # a quoted bracket expression, e.g. k="[a,b]" reaching us with its quotes
    if text[:1] in '([' and _closing_index(text) == len(text) - 1:
        if (text[0], text[-1]) not in (('(', ')'), ('[', ']')):
            raise ValueError(f'mismatched brackets in {text!r}')
        inner = text[1:-1]
        items = [parse_value(p) for p in _split_top_level(inner) if p] if inner else []
        return tuple(items) if text[0] == '(' else items
    parts = _split_top_level(text)
    if len(parts) > 1:
        return [parse_value(p) for p in parts]
    return _parse_scalar(text)


def parse_cfg_options(pairs: Sequence[str]) -> Dict[str, Any]:
    """``['a.b=1', 'k=1,2']`` -> ``{'a.b': 1, 'k': [1, 2]}``."""
    options = {}
    for pair in pairs:
        if '=' not in pair:
            raise ValueError(f'--cfg-options expects key=value, got {pair!r}')
        key, value = pair.split('=', 1)
        if not key:
            raise ValueError(f'--cfg-options: empty key in {pair!r}')
        options[key.strip()] = parse_value(value)
    return options


class DictAction(argparse.Action):
    """argparse action collecting ``key=value`` pairs into a dict (``nargs='+'``)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: Any = None) -> None:
        options = dict(getattr(namespace, self.dest, None) or {})
        try:
            options.update(parse_cfg_options(values if isinstance(values, list) else [values]))
        except ValueError as e:
            parser.error(str(e))
        setattr(namespace, self.dest, options)
