"""Synthetic corpora with hierarchical latent structure: generators, the on-disk store and its reader."""
