"""scalelab.model"""
