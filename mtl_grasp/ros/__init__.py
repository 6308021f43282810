"""mtl_grasp.ros"""
