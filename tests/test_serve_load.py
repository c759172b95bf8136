"""`attn serve` under load: a small run of bench/serve_load.py (the full run is 10,000 requests).

Concurrent clients, single texts and batches of 8, a few over-long and malformed requests:
every valid request gets its answer, every bad one a 4xx JSON error, and the server's memory
stays flat. The script checks all of that itself and exits 1 when a check fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import require_extra

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "serve_load.py"


@pytest.fixture(scope="module", autouse=True)
def _extra() -> None:
    require_extra("serve", "fastapi", "uvicorn")


@pytest.mark.slow
def test_serve_under_load(tmp_path, translate_model, sentiment_model) -> None:
    out = tmp_path / "serve_load.json"
    cmd = [sys.executable, str(SCRIPT), "-m", str(translate_model), "-m", str(sentiment_model)]
    cmd += ["--requests", "400", "--clients", "16", "--warmup", "100", "--threads", "1"]
    cmd += ["--time-limit", "300", "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["answered"] == report["requests"] == 400
    assert report["problems"] == 0
    assert set(report["errors_by_status"]) == {"400", "413", "422"}
    assert report["status"]["200"] == sum(
        n for kind, n in report["requests_by_kind"].items() if kind in ("single", "batch")
    )
    assert abs(report["rss_growth"]) <= 0.10
