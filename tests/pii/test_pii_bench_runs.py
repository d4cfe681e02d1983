"""The PII benchmark keeps running: a tiny corpus through fjordgate and the floor."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_reports_ratios_and_recall_as_markdown(tmp_path: Path) -> None:
    out = tmp_path / "pii.md"
    command = [sys.executable, "-m", "bench.pii", "--docs", "60", "--repeat", "1"]
    command += ["--no-presidio", "--no-engines", "--out", str(out)]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    report = out.read_text(encoding="utf-8")
    assert report in proc.stdout
    assert "| fjordgate Detector | 60 |" in report
    assert "slower than the floor" in report
    assert "## Recall per type" in report and "| fodselsnummer | 1.0000 | 1.0000 |" in report
