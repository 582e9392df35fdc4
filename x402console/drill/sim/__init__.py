"""The simulated x402 prover: a real HTTP server process behaving like the real gin prover.

Entry point: x402console.drill.sim.main.run_sim(argv). Fault control: control_client.SimControl.
"""
