"""Reading and writing: images (TIFF, PNG, JPEG), datasets and sample sheets, plates and plate maps,
the tile store, atomic writes, logs, figures on disk and the one error type of bad input.
"""
