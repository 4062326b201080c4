"""`python -m mailtrap_smtp` is the same as the `mailtrap-smtp` command."""

import sys

from .cli import main

sys.exit(main())
