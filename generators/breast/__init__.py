"""Breast generators."""
