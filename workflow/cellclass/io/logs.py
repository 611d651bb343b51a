"""Send a job's log lines to its Snakemake log file as well as to the terminal."""

import logging
import sys


def to_file(path, level=logging.INFO):
    """Log to `path` and stderr; an uncaught error lands in the log too, so the log says why a job failed.

    cellclass's DEBUG lines (one per image of a shard) go to the file only, so
    the terminal gets a few lines per job however many images a shard holds.
    """
    file_handler = logging.FileHandler(path)
    file_handler.setLevel(logging.DEBUG)
    terminal = logging.StreamHandler()
    terminal.setLevel(level)
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[file_handler, terminal],
        force=True,
    )
    logging.getLogger("cellclass").setLevel(logging.DEBUG)
    logging.captureWarnings(True)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # font cache notices

    def log_uncaught(kind, error, trace):
        logging.getLogger("cellclass").error("%s: %s", kind.__name__, error, exc_info=(kind, error, trace))

    sys.excepthook = log_uncaught
