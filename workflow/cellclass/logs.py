"""Send a job's log lines to its Snakemake log file as well as to the terminal."""

import logging


def to_file(path, level=logging.INFO):
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[logging.FileHandler(path), logging.StreamHandler()],
        force=True,
    )
    logging.captureWarnings(True)
