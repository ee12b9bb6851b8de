"""scalelab.laws"""
