"""training.bench"""
