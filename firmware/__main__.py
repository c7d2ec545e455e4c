"""`python -m firmware` is the `linebox` command."""

from .cli import main

raise SystemExit(main())
