"""cellclass: microscopy fields in, trained CNN classifiers and honest statistics out.

The package holds all logic; the Snakemake rules only call it. It never imports
snakemake, so every function works from a notebook or a test.
"""
