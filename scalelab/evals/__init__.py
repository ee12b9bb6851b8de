"""scalelab.evals"""
