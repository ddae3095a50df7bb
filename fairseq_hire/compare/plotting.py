"""matplotlib for the reports: headless, quiet, and figures written atomically."""
import io
import logging
from pathlib import Path

from glue_prep.atomic import write_atomically


def pyplot():
    """matplotlib.pyplot on the Agg backend, its DEBUG chatter off (fairseq's logging setup
    would otherwise print every font it considers)."""
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 110) -> None:
    plt = pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    write_atomically(Path(path), buffer.getvalue())
