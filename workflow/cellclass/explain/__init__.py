"""Explain: a trained run and its test tiles in, attribution maps (gradient x input, integrated gradients,
SmoothGrad, Grad-CAM) out, scored by their enrichment in masks, with a randomised-network check.
"""
