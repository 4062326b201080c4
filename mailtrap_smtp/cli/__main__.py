"""`python -m mailtrap_smtp.cli`, as the single-file cli.py allowed; `python -m mailtrap_smtp` is the usual way."""

import sys

from . import main

sys.exit(main())
