"""Uses of a trained run: restore it (restore), read a user's inputs
(inputs), export its encoder (export), decode from it (sampling)."""
