"""Experiments built on the library: the methods compared, the reproduction
(its plan, sizes and re-readings), the reports written from it (results*),
and the speed benchmark. Nothing in the method or the training protocol
imports this package."""
