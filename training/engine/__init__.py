"""training.engine"""
