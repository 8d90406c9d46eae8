"""Post classifier: labels a brand's own posts engaging, inspiring or sales-pitch.

The model, its training and evaluation arrive with the classifier issue; this package never imports
``monitor``.
"""
