"""Prepare: raw fields in, stored tiles out (grid squares or one crop per segmented cell), with the
foreground, normalisation, shards of images per job, the split by group, and augmentation that needs the field.
"""
