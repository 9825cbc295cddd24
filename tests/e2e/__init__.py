"""Helpers for tests that drive a running SynthPACS through its public protocols."""
