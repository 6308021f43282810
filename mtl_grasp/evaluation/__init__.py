"""mtl_grasp.evaluation"""
