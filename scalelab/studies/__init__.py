"""scalelab.studies"""
