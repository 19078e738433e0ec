"""The emotion model: labels (numpy-only) and, under the `train` extra, the torch code."""
