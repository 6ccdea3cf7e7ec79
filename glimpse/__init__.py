"""glimpse: an image retrieval engine."""
