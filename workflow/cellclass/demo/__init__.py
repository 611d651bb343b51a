"""Demo: the embedded synthetic data (fields with ground-truth puncta, nuclei and cells; screening
plates with a known dose-response) and the check of our segmentation against it.
"""
