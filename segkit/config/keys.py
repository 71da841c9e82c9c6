"""``check_keys``: a small config section may name only the keys its reader acts on; a typo is an error, not a
silent no-op."""
from __future__ import annotations

import difflib
import warnings
from typing import Mapping, Sequence


class UnknownKeyError(KeyError):
    """A config section names a key its reader does not know (a KeyError, as MMEngine raises for these)."""


def check_keys(section: str, given: Mapping, supported: Sequence[str], ignored: Sequence[str] = ()) -> None:
    """Raise UnknownKeyError for a key of ``given`` that is neither ``supported`` nor ``ignored``, naming the closest
    known keys; warn for each ``ignored`` one (keys MMEngine/MMSeg define that segkit accepts without acting
    on them)."""
    for key in given:
        if key in supported:
            continue
        if key in ignored:
            warnings.warn(f'{section}.{key} is an MMEngine/MMSeg setting that segkit does not implement; '
                          f'it is ignored', stacklevel=3)
            continue
        close = difflib.get_close_matches(str(key), [*supported, *ignored], n=2)
        hint = f'; did you mean {" or ".join(map(repr, close))}?' if close else ''
        raise UnknownKeyError(f'{section}.{key} is not a setting segkit knows{hint} '
                              f'(known: {", ".join(supported)})')
