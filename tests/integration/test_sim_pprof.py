"""/debug/pprof: 404 like the real prover by default, real profiles with --pprof."""

from __future__ import annotations

from tests.rig.sim import sim_factory  # noqa: F401


def test_pprof_is_404_by_default(sim_factory) -> None:  # noqa: F811
    sim = sim_factory("--exempt-ip", "127.0.0.1")
    with sim.client() as c:
        for path in ("/debug/pprof/", "/debug/pprof/goroutine", "/debug/pprof/heap", "/debug/pprof/profile"):
            r = c.get(path)
            assert (r.status_code, r.text) == (404, "404 page not found"), path


def test_pprof_serves_real_data(sim_factory) -> None:  # noqa: F811
    sim = sim_factory("--pprof", "--exempt-ip", "127.0.0.1")
    assert "[GIN-debug] GET    /debug/pprof/heap" in sim.stdout
    with sim.client(timeout=20) as c:
        index = c.get("/debug/pprof/")
        assert index.status_code == 200 and "goroutine" in index.text and "heap" in index.text
        assert c.get("/debug/pprof").status_code == 301  # gin's trailing-slash redirect

        g1 = c.get("/debug/pprof/goroutine", params={"debug": "1"})
        assert g1.status_code == 200 and g1.text.startswith("goroutine profile: total ")
        assert int(g1.text.split()[3]) >= 2
        assert "service.py" in g1.text or "base_events.py" in g1.text  # real stacks of this process
        g2 = c.get("/debug/pprof/goroutine", params={"debug": "2"})
        assert g2.text.startswith("goroutine 1 [") and "\t/" in g2.text

        c.post("/generate-proof", content=b"{}")
        heap = c.get("/debug/pprof/heap")
        assert heap.status_code == 200 and heap.text.startswith("heap profile: ")
        assert "# runtime.MemStats" in heap.text and ".py:" in heap.text

        prof = c.get("/debug/pprof/profile", params={"seconds": "1"})
        assert prof.status_code == 200
        assert "CPU profile of the event loop thread for 1s" in prof.text
        assert "function calls" in prof.text and "cumulative" in prof.text

        cmd = c.get("/debug/pprof/cmdline")
        assert cmd.text.split("\x00")[1:3] == ["--port", str(sim.port)]
