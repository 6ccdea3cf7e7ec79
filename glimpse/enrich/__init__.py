"""Enrichment passes: slower readings of the images that run after the fast embedding."""
