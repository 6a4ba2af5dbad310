"""Evaluation tooling: sets of real-world inputs with their expected outcomes, and the scripts that score them."""
