"""scalelab.data"""
