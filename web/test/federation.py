"""A survey federation of real processes on loopback, with the survey page, for the page's browser test,
benchmark and screenshots.

Started with the ``mpcdp`` command line exactly as a pollster would: ``certs init --survey``, ``survey
invite``, one ``survey aggregator`` per aggregator with ``--https`` and ``--issuer-key`` (reports admitted
by token only), ``survey issuer`` (the token endpoint), ``survey serve-page`` over HTTPS; every HTTPS
server allows the page's origin (``--cors-origin``). ``close()`` runs ``survey close`` and returns the
release. Loaded by path (``web/`` is not a Python package).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx

from mpcdp.survey.definition import parse_survey
from services.launch import Processes, mpcdp_command, reserve_ports

# Every question kind, each with a local mechanism; min_respondents = 1 so one respondent can be released.
SURVEY = """\
[survey]
id = "web-page-test"
title = "Survey page test"
min_respondents = 1
proofs = "prio3"

{aggregators}
[[question]]
id = "will_vote"
text = "Will you vote in the election?"
kind = "yesno"
local = {{ mechanism = "two_coin" }}
central = {{ epsilon = 0.5 }}

[[question]]
id = "vote"
text = "Which party will you vote for?"
kind = "choice"
options = ["Greens", "Labour", "Liberal", "Conservative", "Other"]
local = {{ mechanism = "krr", epsilon = 2.0 }}
central = {{ epsilon = 0.5 }}

[[question]]
id = "issues"
text = "Which issues matter most to you?"
kind = "multiselect"
options = ["economy", "health", "climate", "housing"]
local = {{ mechanism = "rr", epsilon = 4.0 }}
central = {{ epsilon = 0.5 }}

[[question]]
id = "salary"
text = "What is your yearly salary (EUR)?"
kind = "numeric"
bounds = [0, 200000]
step = 64
local = {{ mechanism = "laplace", epsilon = 1.0 }}
central = {{ epsilon = 0.5 }}
"""


def without_noise(text: str) -> str:
    """``text`` without its local mechanisms and central noise: a survey whose release equals the answers."""
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith(("local = ", "central = ")))


AGGREGATORS = ("pollster-a", "pollster-b", "university-c")


class PageFederation:
    """Aggregators, issuer and page server as processes; ``page_url`` is the page's address."""

    def __init__(self, work: Path, invitations: int = 8, survey_text: str | None = None):
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        names = [f"{a}-grpc" for a in AGGREGATORS] + [f"{a}-https" for a in AGGREGATORS] + ["issuer", "page"]
        self.held = reserve_ports(names)
        self.ports = {name: sock.getsockname()[1] for name, sock in self.held.items()}
        blocks = "".join(
            f'[[aggregator]]\nname = "{a}"\naddress = "127.0.0.1:{self.ports[a + "-grpc"]}"\n\n' for a in AGGREGATORS
        )
        self.survey = self.work / "survey.toml"
        self.survey.write_text((survey_text or SURVEY).format(aggregators=blocks))
        self.survey_id = parse_survey(self.survey.read_text()).id
        self.certs = self.work / "certs"
        self.tokens = self.work / "tokens"
        self.page_url = f"https://127.0.0.1:{self.ports['page']}/"
        self.origin = self.page_url.rstrip("/")
        self.endpoints = {
            "survey": self.survey_id,
            "issuer": f"https://127.0.0.1:{self.ports['issuer']}",
            "aggregators": {a: f"https://127.0.0.1:{self.ports[a + '-https']}" for a in AGGREGATORS},
        }
        self.processes = Processes(self.work / "logs")
        self.codes: list[str] = []
        self._invitations = invitations

    def mpcdp(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            mpcdp_command(*args), capture_output=True, text=True, cwd=self.work, timeout=timeout, check=False
        )
        if done.returncode:
            raise RuntimeError(f"mpcdp {' '.join(args[:2])} failed: {done.stderr[-2000:]}")
        return done.stdout

    def start(self) -> PageFederation:
        survey = str(self.survey)
        self.mpcdp("certs", "init", "--survey", survey, "--out", str(self.certs))
        out = self.work / "invitations.json"
        self.mpcdp(
            "survey", "invite", "--survey", survey, "--count", str(self._invitations), "--tokens", str(self.tokens),
            "--json", "--out", str(out),
        )  # fmt: skip
        self.codes = json.loads(out.read_text())["invitations"]
        endpoints = self.work / "endpoints.json"
        endpoints.write_text(json.dumps(self.endpoints))
        common = ["--cors-origin", self.origin, "--endpoints", str(endpoints)]
        for a in AGGREGATORS:
            self.processes.start(
                a,
                mpcdp_command(
                    "survey", "aggregator", "--survey", survey, "--name", a, "--certs", str(self.certs),
                    "--store", f"sqlite://{self.work / (a + '.db')}",
                    "--https", f"127.0.0.1:{self.ports[a + '-https']}",
                    "--issuer-key", str(self.tokens / "issuer.json"), *common,
                ),
            )  # fmt: skip
        self.processes.start(
            "issuer",
            mpcdp_command(
                "survey", "issuer", "--survey", survey, "--tokens", str(self.tokens), "--certs", str(self.certs),
                "--listen", f"127.0.0.1:{self.ports['issuer']}", *common,
            ),
        )  # fmt: skip
        self.processes.start(
            "page",
            mpcdp_command(
                "survey", "serve-page", "--survey", survey, "--endpoints", str(endpoints),
                "--issuer-key", str(self.tokens / "issuer.json"),
                "--listen", f"127.0.0.1:{self.ports['page']}",
                "--https-cert", str(self.certs / "issuer.pem"), "--https-key", str(self.certs / "issuer.key"),
            ),
        )  # fmt: skip
        for sock in self.held.values():
            sock.close()
        urls = {**{a: f"{u}/healthz" for a, u in self.endpoints["aggregators"].items()}}
        urls["issuer"] = f"{self.endpoints['issuer']}/healthz"
        urls["page"] = self.page_url + "survey.json"
        for name, url in urls.items():
            self._wait(name, url)
        return self

    def _wait(self, name: str, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.processes.running(name):
                raise RuntimeError(f"{name} exited during start-up:\n{self.processes.log(name)}")
            try:
                if httpx.get(url, verify=False, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not answer {url}:\n{self.processes.log(name)}")

    def close(self) -> dict:
        """``mpcdp survey close`` as the coordinator: the release as a document."""
        out = self.work / "results.json"
        self.mpcdp("survey", "close", "--survey", str(self.survey), "--certs", str(self.certs), "--json", str(out))
        return json.loads(out.read_text())

    def stop(self) -> None:
        self.processes.stop()
        for sock in self.held.values():
            sock.close()
