"""training.diagnostics"""
