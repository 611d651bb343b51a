"""Share: trained runs in, a bioimage.io model package out (validated with bioimageio.core); and the
reader of such packages, so a package classifies new images without the runs that made it.
"""
