"""scalelab.report"""
