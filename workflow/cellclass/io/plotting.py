"""What every figure module shares: reproducible saving, one colour per name, the jitter of run points."""

import os
from pathlib import Path

import matplotlib

from cellclass.io.atomic import atomic_path

# No timestamps and fixed SVG ids, so rerunning a rule rewrites identical files.
_METADATA = {".svg": {"Date": None}, ".pdf": {"CreationDate": None}}
JITTER = 0.15  # horizontal spread of points drawn over a box


def save(fig, paths):
    """Write `fig` to each path (the suffix picks the format), atomically and byte-for-byte reproducibly.

    Returns `fig`, so each figure function can hand back what it drew (tests and notebooks inspect it).
    """
    # Lay the figure out once, then freeze it: otherwise each format's renderer
    # re-runs the layout and an SVG written alone differs from one written after a PNG.
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    for path in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        path = Path(path)
        with atomic_path(path) as tmp, matplotlib.rc_context({"svg.hashsalt": "cellclass"}):
            fig.savefig(tmp, dpi=150, metadata=_METADATA.get(path.suffix.lower()))
    return fig


def colours(names):
    """One tab10 colour per name, in the order given."""
    cycle = matplotlib.color_sequences["tab10"]
    return {name: cycle[i % len(cycle)] for i, name in enumerate(names)}
