"""The local app over HTTP, as a user meets it (`python -m sae_workbench serve`, real
Gemma, conftest.py's server): bound to 127.0.0.1, the prompt view and its highlights,
steering beside the unsteered continuation with the steer stage's measures, every
bad input of issue 20 refused with a one-line 4xx while the app keeps serving, ten
requests at once, a client that goes away mid-generation, and a prompt answered
during a long steering run. The first test (no Gemma) is the missing-SAE refusal."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import pytest

from app_server import D_SAE, HOOK, SPECIALIST, call
from helpers import ROOT

PROMPT = "def area(r):\n    return 3.14159 * r ** 2  # the area of a circle"


def test_missing_saes_stop_with_one_line_before_loading_the_model(tmp_path):
    r = subprocess.run([sys.executable, "-m", "sae_workbench", "serve", "--saes", str(tmp_path / "none"), "--port", "1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no trained SAE for") and "run dvc repro first" in lines[0], r.stderr


def listening(port: int) -> list[tuple[str, str]]:
    """(family, local address) of every socket listening on `port`, from /proc/net/tcp{,6}."""
    out = []
    for fam in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{fam}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if int(p, 16) == port and state == "0A":
                out.append((fam, addr))
    return out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the listening sockets from Linux's /proc/net/tcp")
def test_listens_on_127_0_0_1_only_by_default(server, port_of):
    assert listening(port_of) == [("tcp", "0100007F")]  # 127.0.0.1, nothing on 0.0.0.0 or IPv6


class Spans(HTMLParser):
    """The token spans of a highlight: (data-act, title, text) per span of class tok."""

    def __init__(self):
        super().__init__()
        self.spans, self._open = [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "span" and a.get("class") == "tok":
            self._open = [a.get("data-act"), a.get("title"), ""]

    def handle_data(self, data):
        if self._open is not None:
            self._open[2] += data

    def handle_endtag(self, tag):
        if tag == "span" and self._open is not None:
            self.spans.append(tuple(self._open))
            self._open = None


def spans(html: str) -> list[tuple]:
    p = Spans()
    p.feed(html)
    return p.spans


@pytest.mark.slow
def test_prompt_view_lists_tokens_features_and_highlights(server):
    status, v = call(server, "/api/prompt", {"prompt": PROMPT})
    assert status == 200, v
    assert v["hook"] == HOOK and not v["truncated"]
    toks = v["tokens"]
    assert toks[0]["special"] and not any(t["special"] for t in toks[1:])  # BOS, then the prompt's tokens
    assert "".join(t["text"] for t in toks[1:]) == PROMPT
    assert v["n_tokens"] == len(toks) - 1
    for t in toks[1:]:
        vals = [x["value"] for x in t["top"]]
        assert 0 < len(vals) <= 5 and vals == sorted(vals, reverse=True) and all(0 <= x["feature"] < D_SAE for x in t["top"])
    assert 0 < len(v["features"]) <= 10
    for f in v["features"]:
        s = spans(f["highlight"])
        assert len(s) == v["n_tokens"]  # one span per non-special token
        assert "".join("".join(text for _, _, text in s).split()) == "".join(PROMPT.split())  # gaps between spans: whitespace only
        acts = [float(a) for a, _, _ in s]
        assert max(acts) == pytest.approx(f["max"], abs=1e-3) and all(float(t) == pytest.approx(float(a), abs=1e-3) for a, t, _ in s)
        assert f["link"] == f"/browser/{HOOK}/feature.html#{f['feature']}"
    with urllib.request.urlopen(server + v["features"][0]["link"]) as r:  # the static browser, mounted at /browser/
        assert r.status == 200 and b"feature page" in r.read()
    status, page = call(server, f"/api/feature/{HOOK}/{SPECIALIST}")  # the summary, the link target without the browser
    assert status == 200 and page["category"] == "python" and page["specialist"]["max_act"] == 40.0


@pytest.mark.slow
def test_long_prompt_is_cut_with_a_notice(server):
    status, v = call(server, "/api/prompt", {"prompt": "word " * 390})  # 2,000 characters allowed, 256 tokens read
    assert status == 200 and v["truncated"] and "limit 256" in v["notice"] and len(v["tokens"]) == 256


@pytest.mark.slow
def test_steering_returns_both_continuations_with_the_steer_stage_measures(server):
    body = {"prompt": "The weather today is", "feature": SPECIALIST, "coefficient": 100, "mode": "add", "max_new_tokens": 8}
    status, r = call(server, "/api/steer", body)
    assert status == 200, r
    assert r["category"] == "python" and "P(python)" in r["judge"] and r["scale"] == 40.0 and r["value"] == 4000.0
    for side in ("unsteered", "steered"):
        s = r[side]
        assert s["continuation"] and 0 <= s["judge_score"] <= 1 and s["perplexity"] > 1 and s["concept_score"] >= 0
    assert r["steered"]["continuation"] != r["unsteered"]["continuation"]
    assert r["unsteered"]["feature_activation"] == pytest.approx(r["unsteered"]["concept_score"], abs=1e-4)  # unsteered: the same text read
    assert 0 <= r["steered"]["fluency"] <= 1 and r["steered"]["combined"] is not None
    # a feature that is no specialist: no category, so no judge
    status, r = call(server, "/api/steer", {**body, "feature": SPECIALIST + 1, "mode": "clamp", "coefficient": 0})
    assert status == 200 and r["category"] is None and "no category" in r["judge"] and r["steered"]["judge_score"] is None
    assert "median max activation of the 1 features" in r["scale_source"] and r["scale"] == 40.0  # not in the analysis


BIG = "x" * 100_000
BAD = [
    ("empty prompt", "/api/prompt", {"prompt": ""}, 422, "prompt is empty"),
    ("blank prompt", "/api/prompt", {"prompt": " \n\t "}, 422, "prompt is empty"),
    ("100,000-character prompt", "/api/prompt", {"prompt": BIG}, 413, "100,000 characters; the limit is 2,000"),
    ("100,000-character steering prompt", "/api/steer", {"prompt": BIG, "feature": 1, "coefficient": 1}, 413, "the limit is 2,000"),
    ("unknown hook", "/api/prompt", {"prompt": "hi", "hook": "blocks.99.hook_resid_post"}, 404, "unknown hook"),
    ("unknown hook, steering", "/api/steer", {"prompt": "hi", "feature": 1, "coefficient": 1, "hook": "nope"}, 404, "unknown hook"),
    ("feature id too large", "/api/steer", {"prompt": "hi", "feature": D_SAE, "coefficient": 1}, 404, f"ids run from 0 to {D_SAE - 1}"),
    ("negative feature id", "/api/steer", {"prompt": "hi", "feature": -1, "coefficient": 1}, 404, "unknown feature -1"),
    ("huge feature id", "/api/steer", {"prompt": "hi", "feature": 10**30, "coefficient": 1}, 404, "unknown feature"),
    ("fractional feature id", "/api/steer", {"prompt": "hi", "feature": 1.5, "coefficient": 1}, 422, "feature:"),
    ("NaN coefficient", "/api/steer", b'{"prompt": "hi", "feature": 1, "coefficient": NaN}', 422, "coefficient: Input should be a finite number"),
    ("inf coefficient", "/api/steer", b'{"prompt": "hi", "feature": 1, "coefficient": Infinity}', 422, "finite number"),
    ("-inf coefficient", "/api/steer", b'{"prompt": "hi", "feature": 1, "coefficient": -Infinity}', 422, "finite number"),
    ("1e309 coefficient", "/api/steer", b'{"prompt": "hi", "feature": 1, "coefficient": 1e309}', 422, "finite number"),
    ("1e30 coefficient", "/api/steer", {"prompt": "hi", "feature": 1, "coefficient": 1e30}, 422, "[-100, 100]"),
    ("string coefficient", "/api/steer", {"prompt": "hi", "feature": 1, "coefficient": "big"}, 422, "coefficient:"),
    ("unknown mode", "/api/steer", {"prompt": "hi", "feature": 1, "coefficient": 1, "mode": "boost"}, 422, "add, clamp"),
    ("too many tokens", "/api/steer", {"prompt": "hi", "feature": 1, "coefficient": 1, "max_new_tokens": 1000}, 422, "[1, 64]"),
    ("zero tokens", "/api/steer", {"prompt": "hi", "feature": 1, "coefficient": 1, "max_new_tokens": 0}, 422, "[1, 64]"),
    ("missing field", "/api/steer", {"prompt": "hi"}, 422, "feature: Field required"),
    ("extra field", "/api/prompt", {"prompt": "hi", "temperature": 2}, 422, "temperature: Extra inputs"),
    ("prompt not a string", "/api/prompt", {"prompt": 5}, 422, "prompt:"),
    ("malformed JSON", "/api/prompt", b'{"prompt": "hi",', 422, "not valid JSON"),
    ("JSON not an object", "/api/prompt", b"[1, 2]", 422, "JSON object"),
    ("feature page, unknown feature", "/api/feature/" + HOOK + "/99999", None, 404, "unknown feature"),
    ("feature page, unknown hook", "/api/feature/blocks.1.hook_resid_post/1", None, 404, "unknown hook"),
    ("feature page, id not a number", "/api/feature/" + HOOK + "/abc", None, 422, "feature:"),
    ("unknown route", "/api/nothing", None, 404, "no such page: /api/nothing"),
    ("missing browser page", "/browser/nothing.html", None, 404, "no such page: /browser/nothing.html"),
    ("wrong method", "/api/steer", "GET", 405, "Method Not Allowed"),
]


@pytest.mark.slow
def test_a_repeat_reuses_the_unsteered_side_and_steers_as_a_first_run_does(server):
    """The playground steers one prompt at coefficient after coefficient: the unsteered side
    of a (hook, feature, prompt, length) is computed once. A repeat gives the same unsteered
    side, and its steered side (computed alone) is what a first run (batched with the
    unsteered one) gives: the same tokens, the measures up to float rounding."""
    body = {"prompt": "On the shelf by the window there is", "feature": SPECIALIST, "coefficient": 60, "mode": "add", "max_new_tokens": 6}
    status, first = call(server, "/api/steer", body)
    assert status == 200 and first["unsteered_reused"] is False, first
    status, other = call(server, "/api/steer", {**body, "coefficient": -60})
    assert status == 200 and other["unsteered_reused"] is True and other["unsteered"] == first["unsteered"]
    assert other["steered"] != first["steered"]  # the other direction, steered anew
    status, again = call(server, "/api/steer", body)
    assert status == 200 and again["unsteered_reused"] is True and again["unsteered"] == first["unsteered"]
    assert again["steered"]["continuation"] == first["steered"]["continuation"]
    for k in ("concept_score", "perplexity", "feature_activation", "judge_score", "fluency", "combined"):
        assert again["steered"][k] == pytest.approx(first["steered"][k], rel=1e-4, abs=1e-5), k
    status, clamp = call(server, "/api/steer", {**body, "mode": "clamp"})  # another mode, the same unsteered side
    assert status == 200 and clamp["unsteered_reused"] is True and clamp["unsteered"] == first["unsteered"]
    status, longer = call(server, "/api/steer", {**body, "max_new_tokens": 7})  # another length: computed anew
    assert status == 200 and longer["unsteered_reused"] is False


@pytest.mark.slow
@pytest.mark.parametrize("path, body, status, words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_gets_a_one_line_4xx_and_the_app_keeps_serving(server, path, body, status, words):
    if body == "GET":
        got, r = call(server, path)
    elif isinstance(body, bytes):
        got, r = call(server, path, raw=body)
    else:
        got, r = call(server, path, body)
    assert got == status, r
    assert list(r) == ["error"] and words in r["error"] and "\n" not in r["error"] and len(r["error"]) < 300, r
    assert call(server, "/api/info")[0] == 200


def _read_response(s: socket.socket) -> tuple[bytes, bytes]:
    """Head and body of one HTTP response: the head and body may arrive in separate segments,
    so read until the body has the length the head announces (or the server closes)."""
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = [int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")]
            if length and len(body) >= length[0]:
                return head, body
        chunk = s.recv(65536)
        if not chunk:
            return head, body
        data += chunk


@pytest.mark.slow
def test_a_body_over_the_limit_is_refused_unread(server, port_of):
    with socket.create_connection(("127.0.0.1", port_of), timeout=30) as s:
        s.sendall(b"POST /api/prompt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 50000000\r\n\r\n" + b'{"prompt": "' + b"x" * 1000)
        head, body = _read_response(s)
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body) == {"error": "the request body is 50000000 bytes; the limit is 1,000,000"}
    assert call(server, "/api/info")[0] == 200


@pytest.mark.slow
def test_ten_requests_at_once(server):
    """Seven prompt views and three steering runs at once: every prompt view is answered; the
    steering beyond Limits.max_steering (2) is refused with 429 rather than queued; then the
    app answers as before."""
    reqs = [("/api/prompt", {"prompt": f"request {i}: {PROMPT}"}) for i in range(7)]
    reqs += [("/api/steer", {"prompt": "The weather today is", "feature": i, "coefficient": 2, "max_new_tokens": 6}) for i in range(3)]
    with ThreadPoolExecutor(10) as pool:
        got = list(pool.map(lambda r: call(server, *r), reqs))
    assert [s for s, _ in got[:7]] == [200] * 7
    steer = sorted(s for s, _ in got[7:])
    assert steer in ([200, 200, 429], [200, 429, 429]), got[7:]
    busy = [r for s, r in got if s == 429]
    assert all(list(r) == ["error"] and r["error"].startswith("busy: ") and "retry" in r["error"] for r in busy)
    assert call(server, "/api/steer", reqs[-1][1])[0] == 200


def running(server) -> tuple[int, int]:
    _, i = call(server, "/api/info")
    return i["running"], i["steering_running"]


def wait_for(cond, timeout: float, step: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return False


@pytest.mark.slow
def test_a_client_that_goes_away_mid_generation_stops_its_work(server, port_of):
    body = json.dumps({"prompt": "The weather today is", "feature": 1, "coefficient": 2, "max_new_tokens": 64}).encode()
    with socket.create_connection(("127.0.0.1", port_of)) as s:
        s.sendall(b"POST /api/steer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert wait_for(lambda: running(server) == (1, 1), 30)
    # the generation stops at its next forward pass (64 tokens would take far longer) and frees its slot
    assert wait_for(lambda: running(server) == (0, 0), 30)
    status, v = call(server, "/api/prompt", {"prompt": PROMPT})
    assert status == 200 and v["n_tokens"] > 0


@pytest.mark.slow
def test_a_prompt_during_a_long_steering_run_is_not_kept_waiting(server):
    done = {}

    def steer():
        t = time.monotonic()
        done["steer"] = call(server, "/api/steer", {"prompt": "The weather today is", "feature": 2, "coefficient": 2, "max_new_tokens": 40})
        done["steer_s"] = time.monotonic() - t

    th = threading.Thread(target=steer)
    th.start()
    assert wait_for(lambda: running(server)[1] == 1, 30)
    time.sleep(0.5)  # well into its generation
    t = time.monotonic()
    status, v = call(server, "/api/prompt", {"prompt": PROMPT})
    prompt_s = time.monotonic() - t
    steering_still_running = "steer" not in done
    th.join()
    assert status == 200 and done["steer"][0] == 200
    assert steering_still_running, f"the prompt ({prompt_s:.1f} s) came back only after the steering run ({done['steer_s']:.1f} s)"
    assert prompt_s < done["steer_s"] / 4, (prompt_s, done["steer_s"])
