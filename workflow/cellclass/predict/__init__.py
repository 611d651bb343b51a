"""Predict: new images and trained runs (or a package) in, calls per tile or cell, image and group out,
with the spread across the ensemble, figures and overlays.
"""
