"""scalelab.sweep"""
