"""`python -m syncd`: the same CLI as the `syncd` console script."""

from syncd.cli import main

main()
