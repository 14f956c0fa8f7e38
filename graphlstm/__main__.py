"""`python -m graphlstm`: the same command as `graphlstm`."""
from .cli import main

raise SystemExit(main())
