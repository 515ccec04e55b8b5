"""The viewer: pages over a synthetic data dir (starlette TestClient), escaping of adversarial
agent output, host binding rules, and a real headless Chromium (Debian ``chromium`` +
``chromium-driver``, driven by selenium; nothing is downloaded) walking rollouts → rollout → run
and taking screenshots into the test's tmp dir."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from rollouts.errors import ConfigError
from rollouts.view.app import create_app
from rollouts.view.server import bind, check_host, make_server
from rollouts.view.trajectory import build
from tests.view_fixture import XSS, build_small, shell_trajectory

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("viewdata")
    return root, build_small(root)


@pytest.fixture(scope="module")
def client(data) -> TestClient:
    return TestClient(create_app(data[0]), base_url="http://127.0.0.1")


def test_rollout_list_and_page_show_summarize_numbers(client, data):
    from rollouts.report.summary import summarize
    from rollouts.store import Store

    ids = data[1]
    r = client.get("/")
    assert r.status_code == 200 and ids["rid"] in r.text and ids["rid2"] in r.text
    assert r.text.index(ids["rid2"]) < r.text.index(ids["rid"])  # newest first
    s = summarize(Store(data[0]).load_manifest("demo", ids["rid"]))
    page = client.get(f"/r/demo/{ids['rid']}").text
    for o in s["overall"]:
        lo, hi = o["ci_low"], o["ci_high"]
        shown = f"{o['macro_mean_reward']:.2f}" + (f" [{lo:.2f}, {hi:.2f}]" if lo is not None else "")
        assert shown in page
    assert page.count('href="/run/') == 5
    from rollouts.report.fmt import fmt_ci

    for r in s["rows"]:  # the per-row table of summarize
        assert f"<td>{r['task']}</td><td>{r['agent']}/{r['model']}</td><td class=\"num\">{r['n']}/{r['runs']}</td>" in page
        assert fmt_ci(r["mean_reward"], r["ci_low"], r["ci_high"]) in page


def test_rollout_filters_and_pagination(client, data):
    rid = data[1]["rid"]
    r = client.get(f"/r/demo/{rid}?status=error&fragment=1")
    assert r.text.count('href="/run/') == 1 and f"{rid}-1" in r.text
    assert r.headers.get("x-rollouts-live") is None  # a finished rollout is not polled
    assert client.get(f"/r/demo/{rid}?agent=rlm").text.count('href="/run/') == 1
    assert client.get(f"/r/demo/{rid}?q=SLUG").text.count('href="/run/') == 1
    assert "no runs match" in client.get(f"/r/demo/{rid}?model=none-such").text


def test_run_page_shows_every_part(client, data):
    runs = data[1]["runs"]
    t = client.get(f"/run/{runs[0]}").text
    assert "ATIF ATIF-v1.4 (our shell agent" in t
    for needle in ("step 1", "step 3", "ls -la", "exit", "tokens 901 + 40", "stats.py",
                   'class="gi"', "VERIFIER-OUTPUT", "tests/test_stats.py::test_mean", "AGENT-LOG-LINE",
                   "Phase timings", "sandbox_start"):
        assert needle in t, needle
    rlm = client.get(f"/run/{runs[2]}").text
    assert "llm_query" in rlm and "SUB-RESPONSE-7" in rlm and "CHILD-ANSWER-42" in rlm and "child RLM" in rlm
    assert "ATIF ATIF-v1.4 (our rlm agent" in rlm  # written by rollouts.atif_agents: native record shown
    harbor = client.get(f"/run/{runs[4]}").text
    assert "ATIF-CMD" in harbor and "ATIF-OBS" in harbor and "ATIF-REASONING" in harbor
    assert "format: <b>atif</b>" in harbor
    atif = client.get(f"/run/{runs[3]}").text  # an installed agent: ATIF built from its gateway exchanges
    assert "format: <b>atif</b>" in atif and "GW-TOOL-ARGS" in atif and "shell" in atif
    assert "attempt 1" in atif and "engine went away" in atif
    # the installed agent's exchanges through the gateway (one per protocol, a torn last line)
    for needle in ("Model exchanges", "exchange 1 · responses · gpt-5", "GW-REPLY", "GW-TOOL-ARGS", "GW-ASK",
                   "refused: limit", "HTTP 429", "GW-ANTHROPIC-TEXT", "tokens 700 + 30",
                   "1 line(s) on this page are not JSON"):
        assert needle in atif, needle
    assert "&lt;script&gt;window.__xss" in atif and "<script>window" not in atif
    att = client.get(f"/run/{runs[3]}?attempt=1").text
    assert "ATTEMPT-1-LOG" in att
    assert client.get(f"/run/{runs[3]}?attempt=9").status_code == 404


def test_agent_output_is_escaped_everywhere(client, data):
    run = data[1]["runs"][1]
    for url in (f"/run/{run}", f"/runs/compare?a={data[1]['runs'][0]}&b={run}", f"/r/demo/{data[1]['rid']}"):
        r = client.get(url)
        assert "<script>window.__xss" not in r.text and "<img src=x" not in r.text, url
        assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in r.text, url
        assert "script-src 'self'" in r.headers["content-security-policy"]
    raw = client.get(f"/raw/{run}/agent/trajectory.json")
    assert raw.headers["content-type"].startswith("text/plain") and "sandbox" in raw.headers["content-security-policy"]


def test_raw_refuses_paths_outside_the_run(client, data, tmp_path):
    run = data[1]["runs"][0]
    secret = data[0] / "secret.txt"
    secret.write_text("top secret")
    os.symlink(secret, data[0] / "runs" / run / "artifacts" / "link.txt")
    assert client.get(f"/raw/{run}/artifacts/link.txt").status_code == 404
    assert client.get(f"/raw/{run}/..%2F..%2Fsecret.txt").status_code == 404
    assert client.get(f"/raw/{run}/logs/agent.log").status_code == 200
    assert client.post("/").status_code == 405  # read-only
    # DNS rebinding: a page served from evil.example whose name resolves to 127.0.0.1
    assert client.get("/", headers={"host": "evil.example:8000"}).status_code == 400
    assert client.get("/", headers={"host": "localhost:8000"}).status_code == 200


def test_compare_pages(client, data):
    ids = data[1]
    r = client.get(f"/compare?a=demo/{ids['rid']}&b=demo/{ids['rid2']}").text
    assert "No significant difference" in r or "significantly" in r
    assert "fix_bug_stats" in r and "B wins" in r
    assert f"/runs/compare?a={ids['rid']}-0&b={ids['rid2']}-0" in r  # same task and arm, A vs B
    side = client.get(f"/runs/compare?a={ids['runs'][0]}&b={ids['runs'][1]}").text
    assert side.count("<h2>") >= 2 and "VERIFIER-OUTPUT" in side


def test_running_rollout_is_live(data):
    from rollouts.store import Store
    from tests.view_fixture import make_manifest

    store = Store(data[0])
    m = make_manifest("live", "20260105__00-00-00", store, [{"status": "running"}, {"reward": 1.0}], status="running")
    m.host, m.pid = __import__("socket").gethostname(), os.getpid()
    store.write_manifest(m)
    c = TestClient(create_app(data[0], min_age_sec=0), base_url="http://localhost")
    assert c.get("/?fragment=1").headers["x-rollouts-live"] == "1"
    assert c.get("/r/live/20260105__00-00-00").headers["x-rollouts-live"] == "1"
    run = c.get("/run/20260105__00-00-00-0")
    assert run.headers["x-rollouts-live"] == "1" and 'data-live="1"' in run.text
    assert 'data-live="0"' in c.get("/run/20260105__00-00-00-1").text  # finished: not polled
    m.results[0].status, m.results[0].reward, m.status = "completed", 0.0, "completed"
    store.write_manifest(m)
    assert "x-rollouts-live" not in c.get("/r/live/20260105__00-00-00?fragment=1").headers
    shutil.rmtree(data[0] / "rollouts" / "live")


def test_atif_with_our_native_record_and_step_extras():
    from tests.view_fixture import atif_trajectory, rlm_trajectory

    wrapped = {**atif_trajectory(), "extra": {"rollouts": rlm_trajectory()}}
    v = build(wrapped)
    assert v["format"].startswith("ATIF ATIF-v1.5 (our rlm agent's record")
    assert v["steps"][0]["calls"][0]["subcalls"][1]["child"]["answer"] == "CHILD-ANSWER-42"
    plain = atif_trajectory()
    plain["steps"][1]["extra"] = {"exit_code": 1, "timed_out": False, "exec_sec": 0.4}
    call = build(plain)["steps"][1]["calls"][0]
    assert (call["exit_code"], call["sec"], call["output"]) == (1, 0.4, "1 failed ATIF-OBS")


def test_rollout_list_reads_only_the_newest_20_per_benchmark(data):
    from rollouts.store import Store
    from tests.view_fixture import make_manifest

    store = Store(data[0])
    for day in range(1, 24):
        store.write_manifest(make_manifest("nightly", f"202602{day:02d}__02-00-00", store, [{"reward": 1.0}]))
    (store.rollout_dir("nightly", "20260201__02-00-00") / "manifest.json").write_text("{broken")  # never read
    c = TestClient(create_app(data[0]), base_url="http://127.0.0.1")
    t = c.get("/").text
    assert "23 rollout(s) · newest 20 shown" in t and "20260223__02-00-00" in t and "20260203__02-00-00" not in t
    all_ = c.get("/?all=nightly").text
    assert "20260202__02-00-00" in all_ and "demo" not in all_
    assert "unreadable" in all_ and "invalid manifest" in all_  # the broken one, with its reason
    shutil.rmtree(data[0] / "rollouts" / "nightly")


def test_rollout_list_serves_the_previous_line_while_it_refreshes(data):
    from rollouts.store import Store
    from tests.view_fixture import make_manifest

    store = Store(data[0])
    rid = "20260107__00-00-00"
    m = make_manifest("swr", rid, store, [{"status": "running"}, {"status": "running"}], status="running")
    m.host, m.pid = __import__("socket").gethostname(), os.getpid()
    store.write_manifest(m)
    app = create_app(data[0], min_age_sec=0)
    c = TestClient(app, base_url="http://127.0.0.1")
    assert "0/2 done" in c.get("/?all=swr").text
    m.results[0].status, m.results[0].reward = "completed", 1.0
    store.write_manifest(m)
    first = c.get("/?all=swr").text  # the previous line, never waiting for the new summary
    for _ in range(100):
        if app.state.catalog.refreshing() == 0 and "1/2 done" in c.get("/?all=swr").text:
            break
        time.sleep(0.05)
    assert "1/2 done" in c.get("/?all=swr").text and ("0/2 done" in first or "1/2 done" in first)
    assert "1/2 done" in c.get(f"/r/swr/{rid}").text or "completed 1" in c.get(f"/r/swr/{rid}").text
    shutil.rmtree(data[0] / "rollouts" / "swr")


def test_big_trajectory_is_paginated():
    t = shell_trajectory(1200, out_chars=4000)  # ~5 MB of JSON
    v = build(t, page=3)
    assert v["total"] == 1200 and v["pages"] == 24 and len(v["steps"]) == 50 and v["steps"][0]["label"] == "step 101"


def test_host_rules():
    check_host("127.0.0.1", False)
    check_host("localhost", False)
    check_host("::1", False)
    with pytest.raises(ConfigError, match="--allow-remote"):
        check_host("0.0.0.0", False)
    check_host("0.0.0.0", True)


def test_view_refuses_remote_host_without_flag(run_cli):
    p = run_cli("view", "--host", "0.0.0.0", "--port", "0")
    assert p.returncode == 2 and "--allow-remote" in p.stderr


# ---------------------------------------------------------------------------- real browser
@pytest.fixture(scope="module")
def server(data):
    sock = bind("127.0.0.1", 0)
    srv = make_server(data[0], sock)
    th = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    th.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    srv.should_exit = True
    th.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("Debian chromium + chromium-driver not installed (scripts/setup.sh installs them)")
    os.environ["SE_OFFLINE"] = "true"  # selenium-manager must never download a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield drv
    drv.quit()


def test_browser_rollouts_to_run(server, browser, data, tmp_path):
    from selenium.webdriver.common.by import By

    ids = data[1]
    browser.get(server + "/")
    assert "Rollouts" in browser.find_element(By.TAG_NAME, "h1").text
    browser.save_screenshot(str(tmp_path / "1_rollouts.png"))
    browser.find_element(By.LINK_TEXT, ids["rid"]).click()
    assert f"demo / {ids['rid']}" in browser.find_element(By.TAG_NAME, "h1").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "table.runs a[href^='/run/']")) == 5
    browser.save_screenshot(str(tmp_path / "2_rollout.png"))
    browser.find_element(By.LINK_TEXT, ids["runs"][0]).click()
    steps = browser.find_elements(By.CSS_SELECTOR, ".step")
    assert [s.find_element(By.CSS_SELECTOR, ".label").text for s in steps] == ["step 1", "step 2", "step 3"]
    assert "ls -la" in steps[0].text
    diff = browser.find_element(By.CSS_SELECTOR, ".diff")
    assert "return sum(xs) / len(xs)" in diff.text
    assert diff.find_element(By.CSS_SELECTOR, ".gi").value_of_css_property("color") != diff.find_element(
        By.CSS_SELECTOR, ".gd").value_of_css_property("color")  # coloured
    assert "VERIFIER-OUTPUT: 2 passed" in browser.find_element(By.ID, "verifier").find_element(
        By.XPATH, "following-sibling::*[contains(., 'VERIFIER-OUTPUT')]").text
    assert "tests/test_stats.py::test_mean" in browser.find_element(By.CSS_SELECTOR, "table.tests").text
    browser.save_screenshot(str(tmp_path / "3_run.png"))
    browser.execute_script("document.getElementById('trajectory').scrollIntoView()")
    browser.save_screenshot(str(tmp_path / "3b_run_trajectory.png"))
    browser.execute_script("document.getElementById('diff').scrollIntoView()")
    browser.save_screenshot(str(tmp_path / "4_run_diff.png"))
    # adversarial output: shown as text, never executed
    browser.get(f"{server}/run/{ids['runs'][1]}")
    assert browser.execute_script("return window.__xss") is None
    assert XSS.split(">")[0] in browser.find_element(By.TAG_NAME, "body").text
    browser.save_screenshot(str(tmp_path / "5_run_xss.png"))
    browser.get(f"{server}/run/{ids['runs'][2]}")
    assert "SUB-RESPONSE-7" in browser.page_source and len(browser.find_elements(By.CSS_SELECTOR, ".sub")) >= 2
    browser.execute_script("document.querySelector('.sub').scrollIntoView()")
    browser.save_screenshot(str(tmp_path / "6_run_rlm.png"))
    browser.get(f"{server}/run/{ids['runs'][4]}")
    browser.execute_script("document.getElementById('trajectory').scrollIntoView()")
    assert "ATIF-OBS" in browser.find_element(By.ID, "live").text
    browser.save_screenshot(str(tmp_path / "6b_run_atif.png"))
    browser.get(f"{server}/run/{ids['runs'][3]}")
    browser.execute_script("document.getElementById('trajectory').scrollIntoView()")
    browser.save_screenshot(str(tmp_path / "6d_run_installed_atif.png"))
    browser.execute_script("document.getElementById('exchanges').scrollIntoView()")
    browser.save_screenshot(str(tmp_path / "6c_run_exchanges.png"))
    browser.get(f"{server}/compare?a=demo/{ids['rid']}&b=demo/{ids['rid2']}")
    assert browser.find_element(By.CSS_SELECTOR, ".verdict").text
    browser.save_screenshot(str(tmp_path / "7_compare.png"))
    shots = sorted(p.name for p in tmp_path.glob("*.png"))
    assert len(shots) == 11 and all((tmp_path / s).stat().st_size > 5000 for s in shots)
    keep = os.environ.get("ROLLOUTS_VIEW_SHOTS")  # optional: copy them somewhere to look at
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for s in shots:
            shutil.copy(tmp_path / s, Path(keep) / s)


def test_browser_running_rollout_updates_live(server, browser, data, tmp_path):
    """A running rollout's page polls: a run finishing on disk shows up without a reload."""
    import socket

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from rollouts.store import Store
    from tests.view_fixture import make_manifest

    store = Store(data[0])
    rid = "20260106__00-00-00"
    m = make_manifest("livebrowser", rid, store, [{"status": "running"}, {"status": "running"}], status="running")
    m.host, m.pid = socket.gethostname(), os.getpid()
    store.write_manifest(m)
    try:
        browser.get(f"{server}/r/livebrowser/{rid}")
        live = browser.find_element(By.ID, "live")
        assert "running 2" in live.text
        m.results[0].status, m.results[0].reward = "completed", 1.0
        store.write_manifest(m)
        WebDriverWait(browser, 10).until(lambda b: "completed 1" in b.find_element(By.ID, "live").text)
        assert "running 1" in browser.find_element(By.ID, "live").text
        browser.save_screenshot(str(tmp_path / "8_live_rollout.png"))
    finally:
        import shutil as _sh

        _sh.rmtree(data[0] / "rollouts" / "livebrowser")


@pytest.mark.docker
def test_viewer_on_a_real_rollout(run_cli, tmp_path, base_image):
    """A real rollout (Docker: oracle and nop, graded by the hidden tests) seen through the viewer:
    what the runner wrote is what the pages show."""
    cfg = tmp_path / "real.toml"
    root = Path(__file__).resolve().parent.parent
    cfg.write_text(f'name = "real"\nparallel = 2\n[[tasks]]\nprepared_dir = "{root}/data/tasks/prepared/fix_bug_stats"\n'
                   f'agent = "oracle"\n[[tasks]]\nprepared_dir = "{root}/data/tasks/prepared/fix_bug_stats"\nagent = "nop"\n')
    data = tmp_path / "data"
    p = run_cli("run", str(cfg), data_dir=data, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    c = TestClient(create_app(data), base_url="http://127.0.0.1")
    rid = next((data / "rollouts" / "real").glob("2*")).name
    assert rid in c.get("/").text
    page = c.get(f"/r/real/{rid}").text
    assert "oracle/none" in page and "nop/none" in page and page.count('href="/run/') == 2
    oracle = c.get(f"/run/{rid}-0").text
    assert "completed" in oracle and 'class="gi"' in oracle  # the oracle's diff, coloured
    assert "Tests (" in oracle and "passed" in oracle and "Verifier output" in oracle
    nop = c.get(f"/run/{rid}-1").text
    assert "The agent changed nothing (empty diff)" in nop and "failed" in nop
