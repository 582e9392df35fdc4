"""The prover's route handlers: /generate-proof, /health, /metrics, /cache/stats."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from x402console.drill.payment import check_signature
from x402console.drill.sim.cache import ProofCache
from x402console.drill.sim.faults import FaultController
from x402console.drill.sim.gofmt import go_json, go_json_bytes, rfc3339_nano
from x402console.drill.sim.httpserver import Request, Response
from x402console.drill.sim.logs import ProverLog
from x402console.drill.sim.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from x402console.drill.sim.metrics import ProverMetrics
from x402console.drill.sim.prover import ProvingSystem, WitnessError, build_witness, public_inputs, unsatisfied_constraint
from x402console.drill.sim.store import ProofStore, expires_at, request_hash
from x402console.drill.sim.validation import BindError, bind_request, validate_request

JSON = "application/json; charset=utf-8"
HEALTH = {"service": "umbra-prover", "status": "healthy", "version": "1.0.0"}


def json_response(status: int, obj: Any, *, sort_keys: bool = True) -> Response:
    """gin's c.JSON: a gin.H map comes out with sorted keys, a struct in field order."""
    return Response(status, go_json_bytes(obj, sort_keys=sort_keys), JSON)


def proof_body(proof: str, inputs: list[str], ms: int) -> dict[str, Any]:
    return {"proof": proof, "publicInputs": inputs, "generationTimeMs": ms}


class Routes:
    def __init__(
        self,
        *,
        log: ProverLog,
        metrics: ProverMetrics,
        cache: ProofCache,
        prover: ProvingSystem,
        store: ProofStore,
        faults: FaultController,
        proof_ttl_s: float,
    ) -> None:
        self.log = log
        self.metrics = metrics
        self.cache = cache
        self.prover = prover
        self.store = store
        self.faults = faults
        self.proof_ttl_s = proof_ttl_s

    def table(self) -> dict[tuple[str, str], Any]:
        return {
            ("POST", "/generate-proof"): self.generate_proof,
            ("GET", "/health"): self.health,
            ("GET", "/metrics"): self.metrics_handler,
            ("GET", "/cache/stats"): self.cache_stats,
        }

    async def health(self, req: Request, ip: str) -> Response:
        return json_response(200, HEALTH)

    async def cache_stats(self, req: Request, ip: str) -> Response:
        return json_response(200, self.cache.stats())

    async def metrics_handler(self, req: Request, ip: str) -> Response:
        body, gzipped = self.metrics.scrape(req.header("Accept-Encoding"))
        headers = [("Content-Encoding", "gzip")] if gzipped else []
        return Response(200, body, METRICS_CONTENT_TYPE, headers)

    async def generate_proof(self, req: Request, ip: str) -> Response:
        """generateProofHandler's steps in its order; the first failing step answers."""
        start = time.perf_counter_ns()
        errors = self.metrics.errors_total
        try:
            pr = bind_request(req.body)
        except BindError as exc:
            self.log.bind_failed(ip, str(exc))
            errors.inc()
            return json_response(400, {"error": "Invalid request format"})

        failed = validate_request(pr)
        if failed is not None:
            self.log.validation_failed(ip, failed[0], failed[1])
            errors.inc()
            return json_response(400, {"error": failed[1]})

        cached = self.cache.get(pr)
        if cached is not None:
            self.log.cache_hit(ip)
            return json_response(200, proof_body(cached.proof, cached.public_inputs, 0), sort_keys=False)

        self.log.generating(ip)
        sig_error = check_signature(pr)
        if sig_error is not None:
            self.log.signature_failed(ip, sig_error)
            errors.inc()
            return json_response(400, {"error": f"Invalid signature: {sig_error}"})

        try:
            witness = build_witness(pr)
        except WitnessError as exc:
            self.log.stage_failed(ip, pr, "Witness creation", str(exc), time.perf_counter_ns() - start)
            errors.inc()
            return json_response(500, {"error": "witness creation failed"})

        inputs = public_inputs(pr)
        prove_start = time.perf_counter()
        await asyncio.sleep(self.prover.prove_seconds() + self.faults.extra_latency())
        prove_error = unsatisfied_constraint(witness) or self.faults.injected_prove_error()
        if prove_error is not None:
            self.log.stage_failed(ip, pr, "Proof generation", prove_error, time.perf_counter_ns() - start)
            errors.inc()
            return json_response(500, {"error": "proof generation failed"})
        proof = self.prover.prove(inputs, witness)
        self.metrics.proof_duration.observe(time.perf_counter() - prove_start)

        if self.faults.tamper_proof():
            proof = self.prover.tamper(proof)
        verify_start = time.perf_counter()
        await asyncio.sleep(self.prover.verify_seconds())
        verify_error = self.prover.verify(proof, inputs)
        if verify_error is not None:
            self.log.stage_failed(ip, pr, "Proof verification", verify_error, time.perf_counter_ns() - start)
            errors.inc()
            self.metrics.note_verification_failure()
            return json_response(500, {"error": "generated proof is invalid"})
        self.metrics.verify_duration.observe(time.perf_counter() - verify_start)

        ms = (time.perf_counter_ns() - start) // 1_000_000
        self.log.generated(ip, pr, ms)
        self.metrics.proofs_total.inc()
        proof_text = go_json(self.prover.to_json_struct(proof))
        self.cache.set(pr, proof_text, inputs)
        await self._persist(pr, proof_text, inputs, ip, ms)
        return json_response(200, proof_body(proof_text, inputs, ms), sort_keys=False)

    async def _persist(self, pr: dict[str, Any], proof_text: str, inputs: list[str], ip: str, ms: int) -> None:
        """StoreProof as intended: a failure is logged and the request still succeeds."""
        req_hash = request_hash(pr)
        stamp, when = expires_at(self.proof_ttl_s)
        err = await self.store.store_proof(req_hash, proof_text, go_json(inputs), ip, ms, stamp)
        if err is None:
            self.log.db_stored(req_hash, ip, rfc3339_nano(when))
        else:
            self.log.db_store_failed(err, req_hash)
