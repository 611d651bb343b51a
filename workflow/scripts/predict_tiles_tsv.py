"""Snakemake adapter: a prediction set's per-tile (cell) table, copied from Parquet to TSV."""

import pandas as pd

from cellclass.io import logs
from cellclass.predict import call_tables

logs.to_file(snakemake.log[0])
call_tables.write_table(pd.read_parquet(snakemake.input[0]), snakemake.output[0])
