"""`python -m scalelab ...` (and `torchrun -m scalelab train ...`)."""

from scalelab.cli import main

main()
