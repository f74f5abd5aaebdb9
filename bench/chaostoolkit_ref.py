"""Chaos Toolkit as the reference for the guard benchmark: the same fault, the same SLO, its own safeguard.

Chaos Toolkit 1.21 needs Python >= 3.12; this project runs on 3.11, so it lives in a venv of its own
(``.cache/chaostoolkit-venv``, made on first use from the first Python >= 3.12 found: ``$RESILIENCE_CTK_PYTHON``,
pyenv's versions, ``python3.13``/``python3.12`` on PATH). No such Python: :func:`chaos_binary` says why and the
benchmark skips the row.

The experiment is what a Chaos Toolkit user would write for the lab's s3-5xx: the method PUTs the fault on the
lab's S3 fault proxy (rate 1.0, no expiry: Chaos Toolkit has no dead-man switch) and holds it for the round;
the rollback PUTs it off; the ``chaosaddons.controls.safeguards`` control polls one Prometheus probe
(``chaosprometheus.probes.query``) every second, the same availability SLO as our guard's, and interrupts
the run (SIGUSR1, then the rollbacks, ``--rollback-strategy always``) when it breaks.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".cache" / "chaostoolkit-venv"
PACKAGES = ("chaostoolkit==1.21.4", "chaostoolkit-lib[jsonpath]", "chaostoolkit-prometheus==0.6.0",
            "chaostoolkit-addons==0.12.0")
HOLD_S = 60  # the method's pause: the round's bound when the safeguard never fires


def _python312() -> str | None:
    candidates = [os.environ.get("RESILIENCE_CTK_PYTHON", "")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python")), reverse=True)
    candidates += [shutil.which(name) or "" for name in ("python3.13", "python3.12")]
    for path in filter(None, candidates):
        try:
            version = subprocess.run([path, "-c", "import sys; print(sys.version_info >= (3, 12))"],
                                     capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        if version.stdout.strip() == "True":
            return path
    return None


def chaos_binary() -> tuple[str | None, str]:
    """(path of ``chaos``, what was done) or (None, why not): the venv is made and filled on first use."""
    chaos = VENV / "bin" / "chaos"
    if chaos.exists():
        return str(chaos), f"Chaos Toolkit venv {VENV}"
    python = _python312()
    if python is None:
        return None, ("no Python >= 3.12 on this machine (set RESILIENCE_CTK_PYTHON, or install one with pyenv): "
                      "Chaos Toolkit 1.21 needs it, its row is skipped")
    subprocess.run([python, "-m", "venv", str(VENV)], check=True)
    install = subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", *PACKAGES], capture_output=True, text=True)
    if install.returncode != 0:
        shutil.rmtree(VENV, ignore_errors=True)
        return None, f"pip install {' '.join(PACKAGES)} failed: {install.stderr.strip()[-500:]}"
    return str(chaos), f"Chaos Toolkit installed in {VENV} from {python}"


def experiment(fault_api: str, prometheus_url: str, availability_query: str, min_availability_pct: float,
               error_rate: float = 1.0) -> dict[str, Any]:
    """s3-5xx at ``error_rate`` on the lab's proxy, guarded by a 1 s safeguard on availability >= the bound."""
    put = {"type": "http", "url": fault_api, "method": "PUT", "timeout": 5,
           "headers": {"Content-Type": "application/json"}}
    breached = f"({availability_query}) < bool {min_availability_pct:g}"
    return {
        "version": "1.0.0",
        "title": "S3 answers 503 to every request; the availability SLO holds",
        "description": "The lab's s3-5xx at rate 1.0, as resilience's guard benchmark runs it.",
        "configuration": {"prometheus_base_url": prometheus_url},
        "controls": [{"name": "safeguard", "provider": {
            "type": "python", "module": "chaosaddons.controls.safeguards",
            "arguments": {"probes": [{
                "name": "availability-slo", "type": "probe", "frequency": 1,
                "provider": {"type": "python", "module": "chaosprometheus.probes", "func": "query",
                             "arguments": {"query": breached, "timeout": 0.8}},
                "tolerance": {"type": "jsonpath", "path": "$.data.result[0].value[1]", "expect": "0"}}]}}}],
        "method": [{"type": "action", "name": "s3-answers-503",
                    "provider": {**put, "arguments": {"error_rate": error_rate, "status": 503}},
                    "pauses": {"after": HOLD_S}}],
        "rollbacks": [{"type": "action", "name": "s3-serves-again",
                       "provider": {**put, "arguments": {"error_rate": 0.0}}}],
    }


def fault_record(fault_api: str) -> list[dict[str, Any]]:
    """The proxy's own record of its fault settings, oldest first."""
    with urllib.request.urlopen(fault_api, timeout=5) as response:
        return list(json.load(response)["changes"])


def on_and_off(changes: list[dict[str, Any]], since: float) -> tuple[float | None, float | None]:
    """(when the fault went on, when it went off again) after ``since``, from the proxy's record."""
    on = next((c["at"] for c in changes if c["at"] >= since and c["error_rate"] > 0), None)
    off = None if on is None else next((c["at"] for c in changes if c["at"] > on and c["error_rate"] == 0), None)
    return on, off


def run_round(chaos: str, workdir: Path, spec: dict[str, Any], kill_after_on_s: float | None = None
              ) -> dict[str, Any]:
    """One ``chaos run --rollback-strategy always``; with ``kill_after_on_s`` the process is SIGKILLed that
    long after the fault went on (what it leaves behind is read from the proxy)."""
    path = workdir / "experiment.json"
    path.write_text(json.dumps(experiment(**spec), indent=2))
    started = time.time()
    process = subprocess.Popen([chaos, "--no-version-check", "--log-file", str(workdir / "chaostoolkit.log"), "run",
                                "--rollback-strategy", "always", "--journal-path", str(workdir / "journal.json"),
                                str(path)], cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    if kill_after_on_s is not None:
        deadline = time.monotonic() + 60
        while (on := on_and_off(fault_record(spec["fault_api"]), started)[0]) is None:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("Chaos Toolkit never turned the fault on")
            time.sleep(0.1)
        time.sleep(max(0.0, on + kill_after_on_s - time.time()))
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return {"started": started, "killed_at": time.time(), "on": on}
    process.wait(timeout=HOLD_S + 60)
    journal = json.loads((workdir / "journal.json").read_text())
    on, off = on_and_off(fault_record(spec["fault_api"]), started)
    return {"started": started, "on": on, "off": off, "status": journal.get("status"),
            "triggered_by": (journal.get("safeguards") or {}).get("triggered_by"),
            "rollbacks": [r.get("status") for r in journal.get("rollbacks", [])]}


if __name__ == "__main__":  # print the experiment a round runs, for a reader
    print(json.dumps(experiment("http://127.0.0.1:P/__fault__", "http://127.0.0.1:Q", "<availability_pct>", 99.5),
                     indent=2), file=sys.stdout)
