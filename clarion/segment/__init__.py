"""Segment stage: train or load the promoted model, score, explain and segment every customer."""
