"""Decoding and preprocessing of each modality: the arrays the model sees in training
and serving."""
