"""The project's benchmark (DESIGN.md §6): `python -m bench [--quick] [--only NAME]`.

Every measurement runs side by side in one process run, against the machine's PostgreSQL and a
Tansu broker started for the run; bench/README.md says what each number means.
"""
