"""Uses of a trained run: restore it, export its encoder, decode from it."""
