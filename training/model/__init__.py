"""training.model"""
