"""scalelab.train"""
