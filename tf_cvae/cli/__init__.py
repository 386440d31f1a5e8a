"""The command-line programs: the tf-cvae-* console scripts and runners/*.py.

This subpackage is the only part of tf_cvae that reads flags: each module
defines its absl flags, turns them into the library's config dataclasses and
exposes main() for its console script.
"""
