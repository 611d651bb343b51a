"""Evaluate: trained runs' predictions in, tidy tables, statistics across runs, findings in words and
figures out; runs.py is the one reader of a run's folder.
"""
