"""Evaluation tasks (one dataset per file) and their scorers, installed as `assistant.evals`."""
