"""The reproduction as data (its plan, sizes, re-readings) and the reports
written from its runs (results*)."""
