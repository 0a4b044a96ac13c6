"""The status page in a real browser: tinyfed-server is started with
--metrics_listen on a fresh store, tinyfed-agent runs a few rounds against
it, tinyfed-admin rolls back to version 2 (a committed version of another
kind), and headless Chromium (Debian's `chromium`) loads http://HOST:PORT/.
Checks, on the DOM as Chromium built it:

  - each count plot (participants, accepted, rejected) has exactly one
    point per committed version, inside its own <svg>, and the loss plot
    one per version trained in a round;
  - the versions table has exactly one row per committed version, the
    rollback's saying what it restored;
  - the console stayed silent (the page has no script, so any message is
    an error: a Content-Security-Policy violation, a parse error);
  - the page made no request but for itself (Chromium's NetLog lists every
    request the page's frame made);

and writes a screenshot to OUT/status-page.png.

  status_page_browser_test.py --server BIN --agent BIN --admin BIN --out DIR
                              [--rounds N]

Exits non-zero naming what failed; a missing `chromium` is a failure
(deploy/setup.sh installs it), not a skip.
"""
import argparse
import html.parser
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

# Chromium starts in a second or two; a loaded CI machine may take ten times that.
CHROMIUM_TIMEOUT_S = 90
VOID_ELEMENTS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                 "source", "track", "wbr"}


class Failure(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_csv(path):
    """300 samples of 4 features in 3 well separated classes."""
    with open(path, "w") as out:
        for i in range(300):
            label = i % 3
            features = [(3.0 if f == label else 0.0) + 0.01 * ((i * 7 + f * 13) % 50)
                        for f in range(4)]
            out.write(",".join(f"{x:.2f}" for x in features) + f",{label}\n")


def wait_for_log(path, text, timeout_s, process):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with open(path, errors="replace") as f:
            if text in f.read():
                return
        if process.poll() is not None:
            break
        time.sleep(0.1)
    with open(path, errors="replace") as f:
        raise Failure(f"tinyfed-server did not log '{text}':\n{f.read()}")


class PageDom(html.parser.HTMLParser):
    """The points (with the ids of their enclosing elements) and table rows."""

    def __init__(self):
        super().__init__()
        self.stack = []  # (tag, id) of the open elements
        self.points = []  # (series, version, tags and ids of the ancestors)
        self.rows = []
        self.row_text = {}  # version -> the row's text
        self.row = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "circle" and "point" in (a.get("class") or "").split():
            self.points.append((a.get("data-series"), a.get("data-version"), list(self.stack)))
        if tag == "tr" and "data-version" in a:
            self.rows.append(a["data-version"])
            self.row = a["data-version"]
            self.row_text[self.row] = ""
        if tag not in VOID_ELEMENTS:
            self.stack.append((tag, a.get("id")))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID_ELEMENTS:
            self.stack.pop()

    def handle_data(self, data):
        if self.row is not None:
            self.row_text[self.row] += data

    def handle_endtag(self, tag):
        if tag == "tr":
            self.row = None
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return


def chromium_command(profile, extra):
    browser = shutil.which("chromium")
    if browser is None:
        raise Failure("chromium is not installed: this test needs Debian's chromium package "
                      "(deploy/setup.sh installs it)")
    # --no-sandbox: containers and CI runners rarely allow its namespaces;
    # the page is our own. --disable-dev-shm-usage: /dev/shm is small there.
    return [browser, "--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage",
            "--no-first-run", "--disable-background-networking", "--disable-extensions",
            "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}"] + extra


def run_chromium(command):
    try:
        return subprocess.run(command, capture_output=True, text=True, errors="replace",
                              timeout=CHROMIUM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise Failure(f"chromium did not finish within {CHROMIUM_TIMEOUT_S} s: {command}")


def page_requests(netlog_path, origin):
    """URLs of the requests made for the page: its own frame's (whose network
    isolation key is the page's site) and any it initiated."""
    with open(netlog_path) as f:
        text = f.read()
    # Chromium may be cut short before it closes the JSON's last array.
    try:
        log = json.loads(text)
    except json.JSONDecodeError:
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    names = {number: name for name, number in log["constants"]["logEventTypes"].items()}
    site = origin.rsplit(":", 1)[0]  # scheme://host, as the isolation key writes it
    urls = []
    for event in log["events"]:
        if names.get(event["type"]) != "URL_REQUEST_START_JOB":
            continue
        params = event.get("params", {})
        if "url" not in params:
            continue
        if params.get("initiator") == origin or site in params.get("network_isolation_key", ""):
            urls.append(params["url"])
    return urls


def check_page(args, work):
    chromium_command(work, [])  # fails at once, before any round, without chromium
    store = os.path.join(work, "store.db")
    config = os.path.join(work, "server.textproto")
    with open(config, "w") as f:
        # Five updates close a round; no deadline falls within the test.
        f.write("head { feature_count: 4 class_count: 3 }\n"
                "policy { target_updates: 5 min_updates: 5 round_deadline_ms: 600000 }\n")
    grpc_port, http_port = free_port(), free_port()
    server_log = os.path.join(work, "server.log")
    with open(server_log, "w") as log:
        server = subprocess.Popen(
            [args.server, "--config", config, "--db", store, "--listen",
             f"127.0.0.1:{grpc_port}", "--metrics_listen", f"127.0.0.1:{http_port}"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_log(server_log, "listening on", 30, server)
        data = os.path.join(work, "data.csv")
        write_csv(data)
        agent = subprocess.run(
            [args.agent, "simulate", f"--server=127.0.0.1:{grpc_port}", f"--dataset={data}",
             "--devices=10", f"--rounds={args.rounds}", "--progress=false",
             f"--fleet_key={store}.fleet.key"],
            capture_output=True, text=True, timeout=300)
        if agent.returncode != 0 or "not committed" in agent.stdout + agent.stderr:
            raise Failure(f"tinyfed-agent simulate failed:\n{agent.stdout}{agent.stderr}")
        rollback = subprocess.run(
            [args.admin, "rollback", "--to", "2", f"--server=127.0.0.1:{grpc_port}"],
            capture_output=True, text=True, timeout=60)
        if rollback.returncode != 0:
            raise Failure(f"tinyfed-admin rollback failed:\n{rollback.stdout}{rollback.stderr}")
        # The initial version, one per committed round, then the rollback,
        # which trained nothing.
        expected = [str(v) for v in range(1, args.rounds + 3)]
        trained = expected[1:-1]

        origin = f"http://127.0.0.1:{http_port}"
        url = origin + "/"
        with urllib.request.urlopen(url, timeout=10) as response:
            if not response.headers.get("Content-Type", "").startswith("text/html"):
                raise Failure(f"/ answered {response.headers.get('Content-Type')}")

        netlog = os.path.join(work, "netlog.json")
        dom_run = run_chromium(chromium_command(
            os.path.join(work, "profile-dom"),
            ["--enable-logging=stderr", "--v=0", f"--log-net-log={netlog}", "--dump-dom", url]))
        if dom_run.returncode != 0:
            raise Failure(f"chromium --dump-dom exited {dom_run.returncode}:\n{dom_run.stderr}")
        with open(os.path.join(args.out, "status-page.dom.html"), "w") as f:
            f.write(dom_run.stdout)
        problems = []

        dom = PageDom()
        dom.feed(dom_run.stdout)
        for series, want in (("participants", expected), ("accepted", expected),
                             ("rejected", expected), ("loss", trained)):
            points = [p for p in dom.points if p[0] == series]
            got = sorted((p[1] for p in points), key=int)
            if got != want:
                problems.append(f"plot series '{series}': points for versions {got}, "
                                f"expected one each for {want}")
            for _, version, ancestors in points:
                tags = [tag for tag, _ in ancestors]
                if "svg" not in tags or "figure" not in tags:
                    problems.append(f"point {series}/v{version} is not inside an <svg> in a "
                                    f"<figure>: {ancestors}")
        rows = sorted(dom.rows, key=int)
        if rows != expected:
            problems.append(f"versions table rows {rows}, expected one each for {expected}")
        restored = dom.row_text.get(expected[-1], "")
        if "rollback of v2" not in restored:
            problems.append(f"the rollback's row does not say what it restored: {restored!r}")

        console = [line for line in dom_run.stderr.splitlines() if ":CONSOLE" in line]
        if console:
            problems.append("the console was not silent:\n  " + "\n  ".join(console))

        requests = page_requests(netlog, origin)
        if url not in requests:
            problems.append(f"the NetLog does not show the page's own request ({url}): "
                            f"cannot tell what else it loaded; saw {requests}")
        others = [r for r in requests if r != url]
        if others:
            problems.append(f"the page made other requests: {others}")

        screenshot = os.path.join(args.out, "status-page.png")
        if os.path.exists(screenshot):
            os.remove(screenshot)
        shot_run = run_chromium(chromium_command(
            os.path.join(work, "profile-shot"),
            [f"--screenshot={screenshot}", f"--window-size={args.window}", url]))
        if shot_run.returncode != 0 or not os.path.exists(screenshot):
            problems.append(f"no screenshot (exit {shot_run.returncode}):\n{shot_run.stderr}")
        else:
            with open(screenshot, "rb") as f:
                if f.read(8) != b"\x89PNG\r\n\x1a\n":
                    problems.append(f"{screenshot} is not a PNG")

        if problems:
            raise Failure("\n".join(problems))
        print(f"status page OK: {len(expected)} versions plotted and listed, console silent, "
              f"no request but {url}; screenshot {screenshot}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--agent", required=True)
    parser.add_argument("--admin", required=True)
    parser.add_argument("--out", required=True, help="where the screenshot and DOM go")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--window", default="1200,1500", help="screenshot size W,H")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="status_page_") as work:
        try:
            check_page(args, work)
        except (Failure, subprocess.TimeoutExpired) as e:
            print(f"status_page_browser_test: FAILED: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
