"""Chest generators."""
