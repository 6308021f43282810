"""training.export"""
