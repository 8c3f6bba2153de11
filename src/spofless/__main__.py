"""`python -m spofless`: the command line, as the stack runs spofless's own parts."""

from spofless.cli import main

main(prog_name="spofless")
