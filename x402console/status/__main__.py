"""`python -m x402console.status` == `x402console status`."""

from x402console.status.cli import main

raise SystemExit(main())
