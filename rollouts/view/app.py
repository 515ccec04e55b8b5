"""The viewer's web app (Starlette, server-rendered Jinja2 pages, read-only).

Routes (all GET; anything else is 405):

* ``/`` — rollouts by benchmark, newest first; ``?fragment=1`` is the live part (polled while a
  rollout runs);
* ``/r/{name}/{rollout_id}`` — one rollout: summary, task × arm grid, filtered paginated runs
  (``status``, ``error_kind``, ``agent``, ``model``, ``q``, ``task``, ``page``, ``tpage``);
* ``/run/{run_id}`` — one run (``attempt=N`` shows ``attempts/N/``; ``page=K`` pages the trajectory);
* ``/raw/{run_id}/{path}`` — a file of a run as plain text (sandboxed, never rendered as HTML);
* ``/compare?a=NAME/ID&b=NAME/ID&match=auto`` — two rollouts, as ``eval-rollouts compare``;
* ``/runs/compare?a=RUN&b=RUN`` — two runs side by side;
* ``/static/*`` — the shipped CSS/JS (no CDN).

Handlers are plain functions: Starlette runs them in its thread pool, so a slow page (a big
manifest being re-read) does not hold up the others. Every page is autoescaped; responses carry a strict Content-Security-Policy (scripts and styles
from this server only, no inline script), so text from agents (trajectories, diffs, logs) cannot
run in the browser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from rollouts.errors import ConfigError
from rollouts.report.fmt import arm_label, fmt, fmt_ci, fmt_cost, fmt_options, max_k, pk
from rollouts.store import FINAL_STATUSES, ErrorKind, RunStatus, Store
from rollouts.view import data as D
from rollouts.view import exchanges as X
from rollouts.view import trajectory as T

HERE = Path(__file__).parent
STATUSES = get_args(RunStatus)  # the filter choices follow the store's vocabulary
ERROR_KINDS = get_args(ErrorKind)
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]
#: Host headers a local viewer answers: anything else is refused (400), so a web page the user
#: visits cannot read the viewer through DNS rebinding (a name of its own resolving to 127.0.0.1).
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
RUNS_PER_PAGE = 100
TASKS_PER_PAGE = 50


def _highlight_diff(text: str | None) -> Markup | None:
    """A unified diff as HTML with pygments classes (pygments escapes the text)."""
    if text is None:
        return None
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import DiffLexer

    return Markup(highlight(text, DiffLexer(), HtmlFormatter(cssclass="hl")))


def _dur(sec: Any) -> str:
    if sec is None:
        return "—"
    s = float(sec)
    return f"{s:.2f} s" if s < 60 else f"{int(s // 60)} min {s % 60:04.1f} s"


def qs(query: dict[str, str], changes: dict[str, Any]) -> str:
    """``?k=v&...``: the page's query with ``changes`` applied (empty values and ``fragment`` dropped)."""
    from urllib.parse import urlencode

    merged = {**query, **{k: str(v) for k, v in changes.items()}}
    return "?" + urlencode({k: v for k, v in merged.items() if v and k != "fragment"})


def make_env() -> Environment:
    """The Jinja environment: autoescape everywhere (templates are ``*.html.j2``)."""
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, trim_blocks=True,
                      lstrip_blocks=True)
    env.filters.update(fmt=fmt, fmt_ci=fmt_ci, fmt_cost=fmt_cost, dur=_dur, options=fmt_options,
                       diff=_highlight_diff)
    env.globals.update(arm_label=arm_label, qs=qs, max_k=max_k, pk=pk, STATUSES=STATUSES, ERROR_KINDS=ERROR_KINDS)
    return env


class _SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(data_dir: str | Path, min_age_sec: float | None = None,
               allowed_hosts: tuple[str, ...] | list[str] = LOCAL_HOSTS) -> Starlette:
    """The viewer over ``data_dir`` (the ``--data-dir`` of the CLI: holds rollouts/ and runs/).
    ``min_age_sec``: overrides :data:`rollouts.view.data.Catalog.MIN_AGE_SEC` (tests: 0).
    ``allowed_hosts``: Host header values answered (``["*"]``: any, for ``--allow-remote``)."""
    cat = D.Catalog(Store(data_dir))
    if min_age_sec is not None:
        cat.MIN_AGE_SEC = min_age_sec
    env = make_env()
    for name in env.list_templates():  # compiled once, at start-up
        env.get_template(name)
    D.warm_up()
    _highlight_diff("--- a/x\n+++ b/x\n")  # pygments' lexer and formatter load once, at start-up
    import threading

    threading.Thread(target=cat.warm, name="view-warm", daemon=True).start()

    def page(tpl: str, request: Request, /, status_code: int = 200, live: bool = False, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("query", dict(request.query_params))
        html = env.get_template(tpl).render(request=request, data_dir=str(data_dir), live=live, **ctx)
        r = HTMLResponse(html, status_code=status_code)
        r.headers["cache-control"] = "no-store"
        if live:
            r.headers["x-rollouts-live"] = "1"
        return r

    def q(request: Request, key: str, default: str = "") -> str:
        return request.query_params.get(key, default)[:200]

    def qint(request: Request, key: str, default: int = 1) -> int:
        v = request.query_params.get(key, "")
        return int(v) if v.isdigit() and len(v) < 9 else default

    def index(request: Request) -> Response:
        only = q(request, "all") or None
        groups, totals = cat.rollouts(None if only else 20, only)
        live = any(i.status == "running" for infos in groups.values() for i in infos)
        tpl = "_rollouts.html.j2" if q(request, "fragment") else "index.html.j2"
        return page(tpl, request, live=live, groups=groups, totals=totals, only=only)

    def rollout(request: Request) -> Response:
        name, rid = request.path_params["name"], request.path_params["rid"]
        m = cat.manifest(name, rid)
        s = cat.summary(name, rid)
        f = {k: q(request, k) for k in ("status", "error_kind", "agent", "model", "q", "task")}
        pg = qint(request, "page")
        runs, matched = cat.runs(name, rid, **f, page=pg, per_page=RUNS_PER_PAGE)
        arms = sorted({(r["agent"], r["model"], r["options"]) for r in s["rows"]})
        tasks = sorted({r["task"] for r in s["rows"]})
        tasks_page, tpage, tpages = T.paginate(tasks, qint(request, "tpage"), TASKS_PER_PAGE)
        on_page = set(tasks_page)
        grid = {(r["task"], r["agent"], r["model"], r["options"]): r for r in s["rows"] if r["task"] in on_page}
        rows = [r for r in s["rows"] if r["task"] in on_page]
        status = D.live_status(m)
        ctx = dict(name=name, rid=rid, m=m, s=s, status=status, runs=runs, rows=rows, matched=matched, f=f, page=pg,
                   pages=max(1, -(-matched // RUNS_PER_PAGE)), arms=arms, tasks=tasks_page, grid=grid,
                   tpage=tpage, tpages=tpages, agents=sorted({t.agent for t in m.tasks}),
                   models=sorted({t.model for t in m.tasks}))
        tpl = "_rollout_live.html.j2" if q(request, "fragment") else "rollout.html.j2"
        return page(tpl, request, live=status == "running", **ctx)

    def run(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        name, m, rec = cat.find_run(run_id)
        attempt = qint(request, "attempt", 0) or None
        d = cat.run_dir(run_id, attempt)
        if attempt is not None and not d.is_dir():
            raise D.NotFound(f"run {run_id} has no attempt {attempt}")
        ctx = _run_context(cat, run_id, d, qint(request, "page"), qint(request, "xpage"))
        same_task = [r for r in m.results if r.task_name == rec.task_name and r.run_id != run_id][:50]
        live = rec.status not in FINAL_STATUSES and attempt is None
        tpl = "_run_live.html.j2" if q(request, "fragment") else "run.html.j2"
        return page(tpl, request, live=live, name=name, m=m, rec=rec, attempt=attempt, same_task=same_task,
                    prefix=f"attempts/{attempt}/" if attempt else "", **ctx)

    def raw(request: Request) -> Response:
        p = cat.safe_file(request.path_params["run_id"], request.path_params["path"])
        r = FileResponse(p, media_type="text/plain; charset=utf-8")
        r.headers["content-security-policy"] = "sandbox; default-src 'none'"
        return r

    def compare(request: Request) -> Response:
        choices = [f"{n}/{rid}" for n in cat.store.list_benchmarks() if D.NAME_RE.match(n)
                   for rid in reversed(cat.store.list_rollouts(n))]
        a, b, match = q(request, "a"), q(request, "b"), q(request, "match", "auto")
        res, error = None, None
        if a and b:
            sa, sb = _ref(a), _ref(b)
            if sa == sb:
                error = "both sides are the same rollout"
            elif match not in ("auto", "exact", "ignore-model", "agent", "task"):
                error = f"unknown match {match!r}"
            else:
                res = cat.compare(sa, sb, match)
                firsts = [_first_runs(cat.manifest(*sa)), _first_runs(cat.manifest(*sb))]
        pairs = {} if res is None else {
            r["key"]: (firsts[0].get((r["task"], r["arm_a"])), firsts[1].get((r["task"], r["arm_b"])))
            for r in res["keys"]}
        return page("compare.html.j2", request, choices=choices, a=a, b=b, match=match, res=res, error=error,
                    pairs=pairs)

    def runs_compare(request: Request) -> Response:
        sides = []
        for key in ("a", "b"):
            run_id = q(request, key)
            name, m, rec = cat.find_run(run_id)
            sides.append({"name": name, "rec": rec, **_run_context(cat, run_id, cat.run_dir(run_id), 1)})
        return page("runs_compare.html.j2", request, sides=sides)

    async def not_found(request: Request, exc: Exception) -> Response:
        return page("error.html.j2", request, status_code=404, message=str(exc))

    async def bad_data(request: Request, exc: Exception) -> Response:
        return page("error.html.j2", request, status_code=500, message=str(exc))

    routes = [
        Route("/", index),
        Route("/r/{name}/{rid}", rollout),
        Route("/run/{run_id}", run),
        Route("/raw/{run_id}/{path:path}", raw),
        Route("/compare", compare),
        Route("/runs/compare", runs_compare),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={D.NotFound: not_found, ConfigError: bad_data})
    app.state.catalog = cat
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.add_middleware(_SecurityHeaders)
    return app


def _first_runs(m) -> dict[tuple[str, str], str]:
    """(task, arm label as compare prints it) -> the first finished run of that key (the side by
    side link of a compare row)."""
    out: dict[tuple[str, str], str] = {}
    for r in m.results:
        if r.status in FINAL_STATUSES:
            out.setdefault((r.task_name, arm_label(r.agent, r.model, r.agent_options)), r.run_id)
    return out


def _ref(s: str) -> tuple[str, str]:
    name, _, rid = s.strip("/").partition("/")
    if not rid:
        raise D.NotFound(f"{s!r}: expected NAME/ROLLOUT_ID")
    return name, rid


def _run_context(cat: D.Catalog, run_id: str, d: Path, step_page: int, exchange_page: int = 1) -> dict[str, Any]:
    """Everything the run page shows from the run folder ``d`` (the run or one of its attempts)."""
    traj_path = d / "agent" / "trajectory.json"
    traj = D.read_json(traj_path)
    tview = T.build(traj, step_page) if traj is not None and "_unreadable" not in traj else None
    diff, diff_cut = D.read_text(d / "artifacts" / "diff.patch")
    agent_log, agent_cut = D.read_text(d / "logs" / "agent.log", tail=True)
    eval_log, eval_cut = D.read_text(d / "logs" / "eval.log", tail=True)
    notes, _ = D.read_text(d / "artifacts" / "notes.md", 100_000)
    attempts = sorted((p for p in (d / "attempts").iterdir() if p.is_dir() and p.name.isdigit()),
                      key=lambda p: int(p.name)) if (d / "attempts").is_dir() else []
    return {
        "run_id": run_id,
        "traj": tview,
        "exchanges": X.build(d, exchange_page),
        "traj_error": traj.get("_unreadable") if isinstance(traj, dict) else None,
        "diff": diff, "diff_cut": diff_cut,
        "agent_log": agent_log, "agent_cut": agent_cut,
        "eval_log": eval_log, "eval_cut": eval_cut,
        "notes": notes,
        "evaluation": D.read_json(d / "evaluation_results.json"),
        "repo_info": D.read_json(d / "artifacts" / "repo_info.json"),
        "attempts": [{"n": int(p.name), "error": D.read_text(p / "error.txt", 4000)[0]} for p in attempts],
        "files": D.list_files(d),
    }
