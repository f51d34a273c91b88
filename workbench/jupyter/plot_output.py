"""A plotly figure as the magics display it: plotly's own output where the front end renders one.

``display(figure)`` hands the figure to plotly's default renderer, which in a terminal IPython is
"browser": every ``%%to_onnx --parity`` opened a browser tab (or, with none, printed webbrowser's
traceback and the figure's repr, a hundred lines). A ``PlotOutput`` offers plotly's mime types only
(renderers that open a browser or write files are left out) and a line of text naming the call that
gives the figure, which is what a front end without plotly shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PlotOutput:
    """``figure`` (a plotly Figure) displayed as its mime bundle, with ``text`` as the plain-text form."""

    figure: Any
    text: str

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        # plotly's bundle for its default renderer, mime-type renderers only: {} where that is "browser"
        bundle = dict(self.figure._repr_mimebundle_())
        bundle["text/plain"] = self.text
        return bundle


__all__ = ["PlotOutput"]
