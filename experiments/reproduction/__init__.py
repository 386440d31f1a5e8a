"""The reproduction: its plan and runs (scales, families, reproduction, cost)
and RESULTS.md written from them (stats, report, figures, and the prose in
RESULTS.template.md)."""
