"""python -m x402console.drill.sim"""

import sys

from x402console.drill.sim.main import run_sim

sys.exit(run_sim())
