"""One display bundle for an interactive widget and its static stand-ins.

A live widget view (``application/vnd.jupyter.widget-view+json``) is dead in a static render
(GitHub, nbviewer) and after a kernel restart, and notebook regression tools cannot compare it
(its model id is random). So every widget the workbench shows travels with a ``text/html``
table and a ``text/plain`` summary in the same bundle: JupyterLab renders the widget, everything
else renders the HTML, and nbval compares the text.
"""

from __future__ import annotations

from typing import Any

WIDGET_MIMETYPE = "application/vnd.jupyter.widget-view+json"


def widget_bundle(widget: Any, *, html: str, text: str) -> dict[str, Any]:
    """The widget's own view plus static ``text/html`` and ``text/plain`` for the same content."""
    bundle: dict[str, Any] = {"text/plain": text, "text/html": html}
    view = widget._repr_mimebundle_()  # ipywidgets' public display hook: {mimetype: data}
    if view and WIDGET_MIMETYPE in view:  # None when the widget has no comm (no kernel)
        bundle[WIDGET_MIMETYPE] = view[WIDGET_MIMETYPE]
    return bundle


__all__ = ["WIDGET_MIMETYPE", "widget_bundle"]
