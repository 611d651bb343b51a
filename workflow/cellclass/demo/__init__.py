"""Demo: the embedded synthetic data (fields with ground-truth puncta, nuclei and cells; screening
plates with a known dose-response; single cells of six nuclear staining patterns, the harder benchmark)
and the check of our segmentation against it.
"""
