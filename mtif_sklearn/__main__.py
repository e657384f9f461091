"""``python -m mtif_sklearn``: the ``mtif-sklearn`` command line (see ``mtif_sklearn._cli``)."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
