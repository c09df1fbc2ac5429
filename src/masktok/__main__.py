"""``python -m masktok …`` runs the ``masktok`` command (so ``torchrun -m masktok …`` works)."""

from masktok.cli import main

if __name__ == "__main__":
    main()
