"""Send a job's log lines to its Snakemake log file as well as to the terminal."""

import logging
import sys


def to_file(path, level=logging.INFO):
    """Log to `path` and stderr; an uncaught error lands in the log too, so the log says why a job failed."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[logging.FileHandler(path), logging.StreamHandler()],
        force=True,
    )
    logging.captureWarnings(True)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # font cache notices

    def log_uncaught(kind, error, trace):
        logging.getLogger("cellclass").error("%s: %s", kind.__name__, error, exc_info=(kind, error, trace))

    sys.excepthook = log_uncaught
