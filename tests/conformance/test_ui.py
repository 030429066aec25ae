"""The web UI in headless Chromium (Debian's, driven by Playwright): sign-in, compute,
notebooks that run, pipelines with their graph, catalog, Lakebase, admin — and what must
not happen (another user's things, script injection, a session without its CSRF token).

Screenshots of each page go to KILN_UI_SCREENSHOTS (default target/ui-screenshots)."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import pytest
from databricks.sdk.service.compute import State
from databricks.sdk.service.workspace import ImportFormat, Language

from kiln_helpers import SDK_TIMEOUT, SPARK_VERSION, http, non_admin, unique

CHROMIUM = os.environ.get("KILN_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(os.environ.get("KILN_UI_SCREENSHOTS", Path(__file__).resolve().parents[2] / "target" / "ui-screenshots"))
TIMEOUT = 120_000


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--disable-gpu", "--no-first-run", "--disable-background-networking",
                                    "--disable-component-update", "--disable-sync"])  # fmt: skip
        yield b
        b.close()


class Session:
    """A signed-in browser tab; collects page errors and dialogs (an injected script would show one)."""

    def __init__(self, browser, kiln, token, viewport=(1280, 800)):
        self.ctx = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        self.page = self.ctx.new_page()
        self.page.set_default_timeout(TIMEOUT)
        self.errors, self.dialogs = [], []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.answers: list[str] = []  # replies to the next prompts the test expects
        self.page.on("dialog", self._dialog)
        self.base = kiln.url("/ui/")
        self.page.goto(kiln.url("/"))
        self.page.get_by_label("Token").fill(token)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.get_by_role("heading", name="Compute").wait_for()

    def _dialog(self, dialog):
        if self.answers:
            dialog.accept(self.answers.pop(0))
        else:
            self.dialogs.append(dialog.message)
            dialog.dismiss()

    def go(self, route):
        url = self.base + "#/" + route
        if self.page.url == url:
            self.page.reload()
        else:
            self.page.goto(url)

    def shot(self, name):
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def close(self):
        self.ctx.close()


@pytest.fixture(scope="module")
def admin(browser, kiln):
    s = Session(browser, kiln, kiln.token)
    yield s
    assert not s.errors, s.errors
    s.close()


@pytest.fixture(scope="module")
def cluster(kiln, w):
    c = w.clusters.create_and_wait(cluster_name=unique("ui"), spark_version=SPARK_VERSION, num_workers=0,
                                   timeout=SDK_TIMEOUT)  # fmt: skip
    assert c.state == State.RUNNING
    yield kiln.track(c.cluster_id)
    w.clusters.permanent_delete(c.cluster_id)


def test_the_page_is_locked_down_and_served_compressed(kiln):
    s = http()
    r = s.get(kiln.url("/ui/"))
    assert r.status_code == 200
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    nonce = re.search(r'name="csp-nonce" content="([0-9a-f]{32})"', r.text).group(1)
    assert f"'nonce-{nonce}'" in csp and nonce not in s.get(kiln.url("/ui/")).text  # fresh per page
    assert kiln.token not in r.text
    assets = re.findall(r'(?:src|href)="(/ui/assets/[^"]+)"', r.text)
    assert len(assets) >= 4, r.text
    for path in assets:
        a = s.get(kiln.url(path), headers={"Accept-Encoding": "gzip"})
        assert a.status_code == 200 and "immutable" in a.headers["Cache-Control"], path
    assert s.get(kiln.url("/ui/assets/000000000000/app.css")).status_code == 404
    # the UI's API needs a session; a session needs the right credentials
    assert s.get(kiln.url("/ui/api/session")).status_code == 401
    r = s.post(kiln.url("/ui/api/login"), json={"token": "dapi-wrong"})
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"


def test_cookie_sessions_need_their_csrf_token(kiln):
    s = http()
    r = s.post(kiln.url("/ui/api/login"), json={"token": kiln.token})
    assert r.status_code == 200, r.text
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    csrf = r.json()["csrf_token"]
    assert s.get(kiln.url("/api/2.0/clusters/list")).status_code == 200
    # JSON for a browser session is compressed; token clients get what they always got
    r = s.get(kiln.url("/api/openapi.json"), headers={"Accept-Encoding": "gzip"})
    assert r.headers.get("Content-Encoding") == "gzip" and r.json()["paths"]
    r = http().get(kiln.url("/api/openapi.json"), headers={"Authorization": f"Bearer {kiln.token}"})
    assert "Content-Encoding" not in r.headers and r.json()["paths"]
    scope = unique("uicsrf")
    r = s.post(kiln.url("/api/2.0/secrets/scopes/create"), json={"scope": scope})
    assert r.status_code == 403 and "CSRF" in r.json()["message"], r.text
    r = s.post(kiln.url("/api/2.0/secrets/scopes/create"), json={"scope": scope}, headers={"X-Kiln-CSRF": "0" * 64})
    assert r.status_code == 403
    r = s.post(kiln.url("/api/2.0/secrets/scopes/create"), json={"scope": scope}, headers={"X-Kiln-CSRF": csrf})
    assert r.status_code == 200, r.text
    assert s.post(kiln.url("/ui/api/logout"), json={}, headers={"X-Kiln-CSRF": csrf}).status_code == 200
    assert s.get(kiln.url("/api/2.0/clusters/list")).status_code == 401


def test_sign_in_with_a_password_and_out(browser, kiln, w):
    from conftest import ADMIN_PASSWORD

    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(kiln.url("/"))
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password", exact=True).fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("alert").wait_for()
    page.get_by_label("Password", exact=True).fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Compute").wait_for()
    assert "admin" in page.locator("header .who").inner_text()
    cookies = {c["name"]: c for c in ctx.cookies()}
    assert cookies["kiln_session"]["httpOnly"] and cookies["kiln_session"]["sameSite"] == "Strict"
    assert kiln.token not in page.content()
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in to Kiln").wait_for()
    page.reload()
    page.get_by_role("heading", name="Sign in to Kiln").wait_for()
    ctx.close()


def test_a_cluster_reaches_running_on_screen(admin, kiln, w):
    page = admin.page
    admin.go("compute")
    c = w.clusters.create(cluster_name=unique("ui-live"), spark_version=SPARK_VERSION, num_workers=0).response
    kiln.track(c.cluster_id)
    row = page.locator(f'tr[data-cluster-id="{c.cluster_id}"]')
    row.wait_for()
    row.locator(".state", has_text="RUNNING").wait_for(timeout=TIMEOUT)  # no reload: the list is live
    admin.shot("compute-list")
    row.get_by_role("link").click()
    page.get_by_text("Spark Connect").wait_for()
    page.get_by_role("heading", name="Event timeline").wait_for()
    admin.shot("compute-detail")
    page.get_by_role("button", name="Terminate").click()
    page.locator(".badge", has_text="TERMINATED").first.wait_for()
    w.clusters.permanent_delete(c.cluster_id)  # the page's live refresh now fails: quietly
    page.wait_for_timeout(2500)


NOTEBOOK = """# Databricks notebook source
print("hello from the notebook")

# COMMAND ----------

# MAGIC %sql
# MAGIC SELECT id, id * id AS square FROM range(5)

# COMMAND ----------

print("<script>alert('injected')</script>")
displayHTML("<b id='html-out'>bold</b><script>alert('from displayHTML')</script><img src=x onerror=\\"alert('img')\\">")
"""


def test_a_notebook_runs_all_cells_and_saves(admin, kiln, w, cluster):
    path = f"/Users/admin/{unique('uinb')}"
    w.workspace.import_(path=path, format=ImportFormat.SOURCE, language=Language.PYTHON,
                        content=base64.b64encode(NOTEBOOK.encode()).decode(), overwrite=True)  # fmt: skip
    page = admin.page
    admin.go("workspace/Users/admin")
    page.get_by_role("link", name=path.split("/")[-1]).click()
    page.get_by_label("Attach to cluster").select_option(cluster)
    page.get_by_role("button", name="Run all").click()
    outputs = page.locator(".cell .output")
    outputs.nth(0).get_by_text("hello from the notebook").wait_for(timeout=TIMEOUT)
    table = outputs.nth(1).locator("table.data")
    table.wait_for(timeout=TIMEOUT)
    assert table.locator("tbody tr").count() == 5
    assert outputs.nth(1).get_by_text("5 rows").count() == 1
    table.get_by_role("button", name="square").click()
    table.get_by_role("button", name="square").click()  # descending
    assert table.locator("tbody tr").first.locator("td").nth(1).inner_text() == "16"
    # a command's output containing <script> is shown as text, displayHTML runs in a sandbox
    third = outputs.nth(2)
    third.get_by_text("<script>alert('injected')</script>").wait_for(timeout=TIMEOUT)
    frame = third.locator("iframe.html-result")
    assert frame.get_attribute("sandbox") == ""
    assert page.frame_locator("iframe.html-result").locator("#html-out").inner_text() == "bold"
    page.wait_for_timeout(500)
    assert admin.dialogs == [], admin.dialogs
    assert page.evaluate("() => document.querySelectorAll('.output script').length") == 0
    admin.shot("notebook")
    # the editor is CodeMirror with syntax highlighting; Shift+Enter runs the cell it is in
    assert page.locator(".cell .cm-editor").count() == 3
    assert page.locator(".cell .cm-content span[class^='ͼ']").count() > 0  # highlighted tokens
    page.get_by_role("textbox", name="Cell source").nth(1).click()
    page.keyboard.press("Shift+Enter")
    outputs.nth(1).locator("table.data").wait_for(timeout=TIMEOUT)
    # edit a cell and save: the SOURCE format round-trips through the Workspace API
    first = page.get_by_role("textbox", name="Cell source").first
    first.click()
    page.keyboard.press("Control+a")
    page.keyboard.type('print("edited")')
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Saved.").wait_for()
    saved = base64.b64decode(w.workspace.export(path).content).decode()
    assert saved.startswith("# Databricks notebook source\nprint(\"edited\")")
    assert "# MAGIC %sql\n# MAGIC SELECT id, id * id AS square FROM range(5)" in saved
    assert saved.count("# COMMAND ----------") == 2
    # move it (export, import at the new path, delete the old one)
    moved = path + "-moved"
    admin.go("workspace/Users/admin")
    admin.answers.append(moved)
    page.get_by_role("button", name=f"Move {path}").click()
    page.get_by_role("link", name=moved.split("/")[-1]).wait_for()
    assert base64.b64decode(w.workspace.export(moved).content).decode() == saved
    assert not any(o.path == path for o in w.workspace.list("/Users/admin"))


MAGIC_LIB = """# Databricks notebook source
def greet(name):
    return f"hello {name}"
"""

MAGIC_NOTEBOOK = """# Databricks notebook source
# MAGIC %run ./{lib}

# COMMAND ----------

print(greet("magic"))

# COMMAND ----------

# MAGIC %pip list

# COMMAND ----------

# MAGIC %sh echo from-the-shell

# COMMAND ----------

# MAGIC %sql
# MAGIC CREATE TABLE main.default.{table} AS SELECT 1 AS id

# COMMAND ----------

# MAGIC %sql
# MAGIC DESCRIBE HISTORY main.default.{table}

# COMMAND ----------

# MAGIC %md
# MAGIC ## A heading from **markdown**

# COMMAND ----------

# MAGIC %sql
# MAGIC OPTIMIZE main.default.{table}
"""


def test_magic_cells_run_in_the_kernel(admin, kiln, w, cluster):
    folder = "/Users/admin"
    lib, nb, table = unique("uilib"), unique("uimagic"), unique("uimagic").replace("-", "_")
    for name, text in ((lib, MAGIC_LIB), (nb, MAGIC_NOTEBOOK.format(lib=lib, table=table))):
        w.workspace.import_(path=f"{folder}/{name}", format=ImportFormat.SOURCE, language=Language.PYTHON,
                            content=base64.b64encode(text.encode()).decode(), overwrite=True)  # fmt: skip
    page = admin.page
    admin.go("workspace/Users/admin")
    page.get_by_role("link", name=nb).click()
    page.get_by_label("Attach to cluster").select_option(cluster)
    page.get_by_role("button", name="Run all").click()
    outputs = page.locator(".cell .output")
    outputs.nth(1).get_by_text("hello magic").wait_for(timeout=TIMEOUT)  # %run brought greet()
    outputs.nth(2).get_by_text("pip").first.wait_for(timeout=TIMEOUT)
    outputs.nth(3).get_by_text("from-the-shell").wait_for(timeout=TIMEOUT)
    history = outputs.nth(5).locator("table.data")
    history.wait_for(timeout=TIMEOUT)
    assert "CREATE TABLE" in history.inner_text() or "WRITE" in history.inner_text()
    outputs.nth(6).locator("h2").get_by_text("A heading from").wait_for(timeout=TIMEOUT)
    assert outputs.nth(6).locator("strong").inner_text() == "markdown"
    outputs.nth(7).locator("table.data").get_by_text("numFilesRemoved").first.wait_for(timeout=TIMEOUT)
    assert page.locator(".cell .output .error").count() == 0
    admin.shot("notebook-magics")


SCALA_NOTEBOOK = """# Databricks notebook source
# MAGIC %scala
# MAGIC val n = 6 * 7
# MAGIC println(s"n is $n")

# COMMAND ----------

# MAGIC %scala
# MAGIC display(spark.range(3).withColumn("twice", col("id") * 2))
"""


def test_scala_cells_run_in_a_scala_context(admin, kiln, w, cluster):
    import shutil

    if not shutil.which("javac"):
        pytest.skip("no JDK on this host (.ci/run installs openjdk-17-jdk-headless)")
    path = f"/Users/admin/{unique('uiscala')}"
    w.workspace.import_(path=path, format=ImportFormat.SOURCE, language=Language.PYTHON,
                        content=base64.b64encode(SCALA_NOTEBOOK.encode()).decode(), overwrite=True)  # fmt: skip
    page = admin.page
    admin.go("workspace/Users/admin")
    page.get_by_role("link", name=path.split("/")[-1]).click()
    page.get_by_label("Attach to cluster").select_option(cluster)
    page.get_by_role("button", name="Run all").click()
    outputs = page.locator(".cell .output")
    outputs.nth(0).get_by_text("n is 42").wait_for(timeout=max(TIMEOUT, 300_000))
    table = outputs.nth(1).locator("table.data")
    table.wait_for(timeout=TIMEOUT)
    assert table.locator("tbody tr").count() == 3
    assert table.locator("tbody tr").last.locator("td").nth(1).inner_text() == "4"
    admin.shot("notebook-scala")


def test_a_pipeline_shows_its_graph(admin, kiln, w):
    sql = (
        "CREATE OR REFRESH MATERIALIZED VIEW raw AS SELECT id FROM range(10);\n"
        "CREATE OR REFRESH MATERIALIZED VIEW evens (CONSTRAINT small EXPECT (id < 6)) AS SELECT id FROM raw WHERE id % 2 = 0;\n"
        "CREATE OR REFRESH MATERIALIZED VIEW odds AS SELECT id FROM raw WHERE id % 2 = 1;\n"
    )
    path = f"/Users/admin/{unique('uipipe')}"
    w.workspace.import_(path=path, format=ImportFormat.SOURCE, language=Language.SQL,
                        content=base64.b64encode(sql.encode()).decode(), overwrite=True)  # fmt: skip
    target = unique("uipipe").replace("-", "_")
    r = kiln.http().post(kiln.url("/api/2.0/pipelines"),
                         json={"name": target, "libraries": [{"notebook": {"path": path}}], "target": target})  # fmt: skip
    assert r.status_code == 200, r.text
    pid = r.json()["pipeline_id"]
    page = admin.page
    admin.go("pipelines")
    page.get_by_role("link", name=target).click()
    page.get_by_text("No update yet").wait_for()
    page.get_by_role("button", name="Start", exact=True).click()
    graph = page.locator("svg.dag")
    graph.locator('[data-dataset$="evens"].status-completed').wait_for(timeout=TIMEOUT)
    graph.locator('[data-dataset$="odds"].status-completed').wait_for(timeout=TIMEOUT)
    assert "5 rows" in graph.locator('[data-dataset$="odds"]').text_content()
    assert "2 failed" in graph.locator('[data-dataset$="evens"]').text_content()
    assert graph.locator("path.edge").count() == 2
    page.get_by_role("table", name="Expectations").get_by_text("small").wait_for()
    admin.shot("pipeline-graph")
    page.get_by_role("checkbox", name="INFO").uncheck()
    page.wait_for_timeout(300)
    assert page.locator("table.events .badge", has_text="INFO").count() == 0
    w.pipelines.delete(pipeline_id=pid)


def test_a_job_runs_from_its_page_and_shows_its_task_graph(admin, kiln, w):
    name = unique("uijob")
    cond = {"op": "EQUAL_TO", "left": "{{job.parameters.who}}", "right": "kiln"}
    r = kiln.http().post(kiln.url("/api/2.2/jobs/create"), json={
        "name": name, "parameters": [{"name": "who", "default": "nobody"}],
        "tasks": [{"task_key": "check", "condition_task": cond},
                  {"task_key": "then", "depends_on": [{"task_key": "check", "outcome": "true"}], "condition_task": cond},
                  {"task_key": "else", "depends_on": [{"task_key": "check", "outcome": "false"}], "condition_task": cond}]})
    assert r.status_code == 200, r.text
    page = admin.page
    admin.go("jobs")
    page.get_by_role("link", name=name).click()
    page.get_by_label("Job parameters (JSON)").fill('{"who": "kiln"}')
    page.get_by_role("button", name="Run now").click()
    graph = page.locator("svg.dag")
    graph.locator('[data-dataset="then"].status-completed').wait_for(timeout=TIMEOUT)
    graph.locator('[data-dataset="else"].status-external').wait_for(timeout=TIMEOUT)
    assert graph.locator("path.edge").count() == 2
    page.get_by_role("table", name="Task runs").get_by_text("EXCLUDED", exact=True).wait_for()
    page.get_by_role("button", name="Output of check").click()
    page.get_by_text("Output of check").wait_for()
    admin.shot("job-run-graph")
    admin.go("jobs")
    page.get_by_label(f"Recent runs of {name}").locator("a.run-dot.success").wait_for()


def test_catalog_and_lakebase_pages(admin, kiln, w):
    from databricks.sdk.service.postgres import Project, ProjectSpec

    page = admin.page
    admin.go("catalog")
    page.get_by_role("link", name="main").click()
    page.get_by_role("link", name="default").wait_for()
    admin.shot("catalog")
    project = unique("uilb")
    w.postgres.create_project(project=Project(spec=ProjectSpec(display_name=project)), project_id=project).wait()
    admin.go("lakebase")
    page.get_by_role("link", name=project).click()
    branch = page.locator(".branch", has_text="production")
    branch.wait_for()
    branch.locator(".endpoint", has_text="primary").wait_for()
    assert f"port={kiln.pg_port} " in branch.get_by_label("psql connection string").inner_text()
    branch.get_by_role("button", name="Generate credential").click()
    secret = page.get_by_label("Credential (PGPASSWORD)")
    secret.wait_for()
    assert len(secret.input_value()) > 20
    admin.shot("lakebase")
    w.postgres.delete_project(f"projects/{project}")


def test_a_non_admin_sees_only_their_own(browser, kiln, w, cluster):
    other = non_admin(kiln, w, "uiuser")
    token = other["w"].tokens.create(comment="ui", lifetime_seconds=3600).token_value
    s = Session(browser, kiln, token, viewport=(390, 844))  # a phone-sized screen
    try:
        page = s.page
        page.get_by_text("0 clusters").wait_for()  # the admin's cluster is not listed
        assert page.locator(f'tr[data-cluster-id="{cluster}"]').count() == 0
        assert page.get_by_role("link", name="Admin").count() == 0
        s.shot("non-admin-compute-phone")
        s.go("workspace/Users/admin")
        page.get_by_role("alert").wait_for()
        assert page.get_by_role("link", name="uinb", exact=False).count() == 0
        s.go("admin")
        page.get_by_role("heading", name="Users").wait_for()
        page.get_by_role("alert").first.wait_for()  # the SCIM API refuses a non-admin
        s.shot("non-admin-admin")
        assert not s.errors, s.errors
    finally:
        s.close()


def test_workspace_and_admin_pages(admin, kiln, w):
    page = admin.page
    admin.go("workspace")
    page.get_by_label("New item name").fill("ui-folder")
    page.get_by_role("button", name="Create folder").click()
    page.get_by_role("link", name="ui-folder").wait_for()
    assert any(o.path == "/Users/admin/ui-folder" for o in w.workspace.list("/Users/admin"))
    admin.shot("workspace")
    scope = unique("uiscope")
    w.secrets.create_scope(scope)
    w.secrets.put_secret(scope, "db-password", string_value="s3cr3t-value-never-shown")
    admin.go("admin")
    page.get_by_role("table", name="Users").get_by_text("admin", exact=True).wait_for()
    page.get_by_text("db-password").wait_for()
    assert "s3cr3t-value-never-shown" not in page.content()
    admin.shot("admin")
    w.secrets.delete_scope(scope)
    # add a user and delete them; revoke a token
    name = unique("uiadd") + "@example.com"
    page.get_by_label("New user name").fill(name)
    page.get_by_role("button", name="Add user").click()
    page.get_by_role("table", name="Users").get_by_text(name).first.wait_for()
    made = w.tokens.create(comment="ui-revoke", lifetime_seconds=600)
    admin.go("admin")
    admin.answers.append("")  # confirm()
    page.get_by_role("button", name="Revoke token ui-revoke").click()
    page.get_by_role("table", name="Tokens").get_by_text("ui-revoke").wait_for(state="detached")
    assert made.token_info.token_id not in {t.token_id for t in w.token_management.list()}
    admin.answers.append("")
    page.get_by_role("button", name=f"Delete user {name}").click()
    page.get_by_role("button", name=f"Delete user {name}").wait_for(state="detached")
    assert not list(w.users.list(filter=f'userName eq "{name}"'))



def test_user_settings_generate_list_and_revoke_access_tokens(admin, kiln, w):
    # seed 003: User settings → Developer → Access tokens → Generate
    page = admin.page
    admin.go("compute")
    page.get_by_role("link", name="User settings").click()
    page.get_by_role("heading", name="User settings").wait_for()
    page.get_by_label("Token comment").fill("ui-generated")
    page.get_by_label("Token lifetime").select_option(label="7 days")
    page.get_by_role("button", name="Generate").click()
    value = page.get_by_label("New token value").input_value()
    assert value.startswith("dapi"), value
    page.get_by_role("table", name="Access tokens").get_by_text("ui-generated").wait_for()
    admin.shot("settings-tokens")
    # the token works, and expires in 7 days
    r = kiln.http(token=value).get(kiln.url("/api/2.0/clusters/list"))
    assert r.status_code == 200, r.text
    mine = [t for t in w.tokens.list() if t.comment == "ui-generated"]
    assert len(mine) == 1 and 6.9 * 86400e3 < mine[0].expiry_time - mine[0].creation_time <= 7 * 86400e3, mine
    # shown once: a reload shows the list, never the value
    admin.go("settings")
    page.get_by_role("table", name="Access tokens").get_by_text("ui-generated").wait_for()
    assert value not in page.content()
    admin.answers.append("")  # confirm()
    page.get_by_role("button", name="Revoke token ui-generated").click()
    page.get_by_role("table", name="Access tokens").get_by_text("ui-generated").wait_for(state="detached")
    assert kiln.http(token=value).get(kiln.url("/api/2.0/clusters/list")).status_code == 401


def test_keyboard_reaches_every_page(admin):
    page = admin.page
    admin.go("compute")
    page.get_by_role("heading", name="Compute").wait_for()
    names = []
    for _ in range(12):  # brand, seven pages, Admin, User settings, Sign out
        page.keyboard.press("Tab")
        names.append(page.evaluate("() => document.activeElement && document.activeElement.textContent"))
    for label in ("Compute", "Workspace", "Jobs", "SQL", "Pipelines", "Catalog", "Lakebase", "Sign out"):
        assert label in names, names


def test_the_sql_editor_runs_a_query_on_a_warehouse(admin, kiln, w):
    page = admin.page
    admin.go("sql/warehouses")
    name = unique("uiwh")
    page.get_by_label("Warehouse name").fill(name)
    page.get_by_label("Cluster size").select_option("2X-Small")
    page.get_by_role("button", name="Create warehouse").click()
    table = page.get_by_role("table", name="Warehouses")
    table.get_by_role("cell", name=name, exact=True).wait_for(timeout=TIMEOUT)
    table.locator("tr", has_text=name).locator(".badge", has_text="RUNNING").wait_for(timeout=TIMEOUT)
    page.get_by_role("button", name="Connection details").first.click()
    page.get_by_role("table", name="Connection details").get_by_role("row", name="HTTP path").get_by_text("/sql/1.0/warehouses/").wait_for()
    admin.shot("sql-warehouses")
    admin.go("sql")
    page.get_by_label("Warehouse").select_option(label=f"{name} (RUNNING)")
    page.get_by_label("SQL statement").fill("SELECT id, concat('row ', id) AS label FROM range(3) ORDER BY id")
    page.get_by_role("button", name="Run").click()
    result = page.get_by_role("table", name="Result")
    result.get_by_text("row 2").wait_for(timeout=TIMEOUT)
    page.get_by_label("Result summary").get_by_text("3 rows").wait_for()
    # sorting by a column puts the largest id first
    result.get_by_role("button", name="id").click()
    result.get_by_role("button", name="id").click()
    assert result.locator("tbody tr").first.locator("td").first.text_content() == "2"
    page.get_by_role("table", name="Query history").get_by_text("FINISHED").first.wait_for(timeout=TIMEOUT)
    admin.shot("sql-editor")
