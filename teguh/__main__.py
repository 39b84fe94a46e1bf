"""`python -m teguh`: the same as the `teguh` command."""

from .cli import main

main(prog_name="teguh")
