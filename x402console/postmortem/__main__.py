from x402console.postmortem.cli import main

raise SystemExit(main())
