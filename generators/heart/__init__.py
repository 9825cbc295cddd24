"""Cardiac generators."""
