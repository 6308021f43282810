"""mtl_grasp.runtime"""
