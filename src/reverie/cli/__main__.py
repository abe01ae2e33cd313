"""`python -m reverie.cli`: the `reverie` command."""

from reverie.cli import main

raise SystemExit(main())
