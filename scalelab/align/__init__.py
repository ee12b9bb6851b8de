"""scalelab.align"""
