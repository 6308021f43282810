"""training.mtl"""
