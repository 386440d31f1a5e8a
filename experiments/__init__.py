"""Experiments built on tf_cvae, kept out of the installed library: the
paper's reproduction (reproduce.py, reproduction/) and the comparison of
every method at matched MI (matched_mi.py). Run them from the repository
root, e.g. `python experiments/reproduce.py --scale=cpu --dry_run`."""
