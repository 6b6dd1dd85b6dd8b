"""mkdocs hook: show the docstrings' Sphinx roles as plain code.

The docstrings cross-reference with Sphinx roles (``:class:`X```, ``:func:`~a.b```), which
mkdocstrings renders literally as ``:class:`` before the code. This drops the role and the
``~`` (Sphinx's "show only the last part") so the page reads ``X`` / ``b``.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj|const):<code>(?:~[\w.]*\.)?")


def on_page_content(html: str, **_: Any) -> str:
    """Rewrite one rendered page."""
    return _ROLE.sub("<code>", html)
