from x402console.cli import main

raise SystemExit(main())
