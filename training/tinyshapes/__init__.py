"""Training, data and evaluation of the shipped tinyshapes model (generation/tinyshapes/weights)."""
