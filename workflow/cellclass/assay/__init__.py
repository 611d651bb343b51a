"""Assay: a plate's calls and its plate map in, per-well scores, Z', SSMD, a dose-response fit and plate
heatmaps out.
"""
