"""Runners: one interface to transcribe audio through a model or an exported artifact."""
