// The web console in a real browser: Debian's chromium, headless, driven by puppeteer-core,
// against a real kiln-orchestrator and the console kiln-worker serves (console_browser_test.cc
// starts both and plays the build's part). The two sides meet through files in a control
// directory: this script writes `<name>` when it reaches a point, and waits for `<name>` that
// the C++ side writes (with content when it hands over a value).
//
//   node console_browser.mjs <url> <admin token> <chromium> <control dir> <screenshot dir>
//
// Exits 0 when every check held; otherwise prints what failed and exits 1.
import fs from "node:fs";
import path from "node:path";
import puppeteer from "puppeteer-core";

const [url, token, chromium, control, shots] = process.argv.slice(2);
const TIMEOUT = 30000;

function say(text) {
  process.stdout.write(`[browser] ${text}\n`);
}

// Whole, or not there yet: the test waits for the file to exist, then reads it (a file
// written in place could be read empty between its creation and its write).
function signal(name, content = "") {
  const file = path.join(control, name);
  fs.writeFileSync(file + ".tmp", content);
  fs.renameSync(file + ".tmp", file);
}

async function waitFile(name) {
  const file = path.join(control, name);
  const deadline = Date.now() + 60000;
  while (!fs.existsSync(file)) {
    if (Date.now() > deadline) throw new Error(`the test never wrote ${name}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return fs.readFileSync(file, "utf8").trim();
}

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
  say(`ok: ${what}`);
}

const browser = await puppeteer.launch({
  executablePath: chromium,
  headless: true,
  // Root in a container has no user namespaces for chromium's sandbox.
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
  defaultViewport: { width: 1280, height: 860 },
  // In the test's control directory: the test ends every process naming it, even when this
  // script is killed before it could close the browser.
  userDataDir: path.join(control, "chromium-profile"),
});
let failed = false;
const problems = [];
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(TIMEOUT);
  // A script or style refused by the Content-Security-Policy, or any script error, fails.
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console: ${message.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  // Clicks `selector` once it is there. The pages re-render live (a deployment's status, a
  // run's history), so the node found may be replaced before the click lands: puppeteer then
  // says "Node is detached from document", or, when the old node is still attached but no
  // longer laid out, "Node is either not clickable or not an Element". It is then found again.
  async function clickLive(selector) {
    for (let attempt = 1; ; attempt++) {
      const button = await page.waitForSelector(selector);
      try {
        await button.click();
        return;
      } catch (error) {
        const replaced = /detached|not clickable/.test(String(error));
        if (attempt >= 10 || !replaced) throw error;
      }
    }
  }

  page.on("response", (response) => {
    if (response.status() >= 400) problems.push(`HTTP ${response.status()} for ${response.url()}`);
  });
  page.on("dialog", (dialog) => dialog.accept());

  // Log in: the token goes to sessionStorage and the deployments page opens.
  await page.goto(url + "#/deployments");
  await page.waitForSelector("#login-form");
  await page.screenshot({ path: path.join(shots, "login.png") });
  await page.type("#token", "wrong");
  await page.click("#login-form button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#login-error").textContent !== "");
  check(true, "a wrong token is refused at login");
  await page.$eval("#token", (input) => { input.value = ""; });
  await page.type("#token", token);
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector("table#deployments");
  check(await page.evaluate(() => sessionStorage.getItem("kiln.token") !== null),
    "the token is kept in sessionStorage");

  // The deployment the test started, while its build runs.
  const building = await waitFile("building");
  const row = `tr[data-deployment="${building}"] td.state`;
  await page.waitForSelector(row);
  check((await page.$eval(row, (td) => td.textContent)) === "building",
    "the deployments page shows the deployment building");

  // Its page: a bar per step, and the log as it grows.
  await page.goto(url + "#/deployment/" + encodeURIComponent(building));
  await page.waitForSelector("#timeline .row");
  await page.waitForFunction(() => document.querySelector("#log")?.textContent.includes("compiling"));
  check(true, "the log shows the build's first line");
  signal("more-log");
  await page.waitForFunction(() => document.querySelector("#log")?.textContent.includes("linking"));
  check(true, "the log grows while the build runs, without a reload");
  const steps = await page.$$eval("#timeline .row", (rows) => rows.map((r) => r.dataset.step));
  check(steps.includes("build") && steps.includes("fetch"), `a bar per step so far (${steps})`);
  await page.screenshot({ path: path.join(shots, "deployment-building.png"), fullPage: true });

  // Back to the list: the state turns to succeeded without a reload.
  await page.goto(url + "#/deployments");
  await page.waitForSelector(row);
  // A mark in the page's globals: a reload would lose it.
  await page.evaluate(() => { window.kilnMark = "still here"; });
  signal("release");
  await page.waitForFunction((selector) => {
    const cell = document.querySelector(selector);
    return cell && cell.textContent === "succeeded";
  }, { timeout: TIMEOUT }, row);
  check(await page.evaluate(() => window.kilnMark === "still here"),
    "the list went from building to succeeded without a reload");
  await page.screenshot({ path: path.join(shots, "deployments.png"), fullPage: true });

  // The ended deployment: one bar per step, each with its duration.
  const expectedSteps = JSON.parse(await waitFile("steps"));
  await page.goto(url + "#/deployment/" + encodeURIComponent(building));
  await page.waitForFunction(() => document.querySelector("#log")?.dataset.ended === "1");
  await page.waitForFunction((n) => document.querySelectorAll("#timeline .row").length === n,
    { timeout: TIMEOUT }, expectedSteps.length);
  const bars = await page.$$eval("#timeline .row", (rows) => rows.map((r) => ({
    step: r.dataset.step,
    width: parseFloat(r.querySelector(".bar").style.width),
    duration: r.querySelector(".duration").textContent,
  })));
  check(JSON.stringify(bars.map((b) => b.step)) === JSON.stringify(expectedSteps),
    `the timeline has a bar per step, in order (${bars.map((b) => b.step)})`);
  check(bars.every((b) => b.width >= 0 && b.width <= 100 && /ms|s|min/.test(b.duration)),
    "each bar has a width and a duration");
  const log = await page.$eval("#log", (pre) => pre.textContent);
  check(log.includes("step 1/2: compiling") && log.includes("[deploy]"),
    "the whole log is shown once the deployment ended");
  await page.screenshot({ path: path.join(shots, "deployment.png"), fullPage: true });

  // The projects page: production is that deployment.
  await page.goto(url + "#/projects");
  await page.waitForSelector('tr[data-project="web"]');
  const production = await page.$eval('tr[data-project="web"]', (tr) => tr.textContent);
  check(production.includes(building) && production.includes("succeeded"),
    "the project shows its production deployment");
  const preview = await waitFile("preview");
  const previewItem = await page.$eval('tr[data-project="web"] li[data-preview="feature-x"]',
    (li) => li.textContent);
  check(previewItem.includes(preview) && previewItem.includes("succeeded"),
    `the project shows its preview of feature-x (${previewItem})`);
  await page.screenshot({ path: path.join(shots, "projects.png"), fullPage: true });

  // Workflows: the query box, kept in the URL. The whole list's answer is held back until the
  // search has drawn its own: when it comes, it must not draw over the search's page.
  const workflowId = "deployment/" + building;
  let held = null;
  const hold = (request) => {
    const u = new URL(request.url());
    if (!held && u.pathname === "/api/v1/workflows" && !u.searchParams.get("query")) {
      held = request;
      return;
    }
    request.continue();
  };
  await page.setRequestInterception(true);
  page.on("request", hold);
  await page.goto(url + "#/workflows");
  await page.waitForSelector("input.query");
  await page.type("input.query", `WorkflowId = "${workflowId}"`);
  await page.keyboard.press("Enter");
  await page.waitForSelector(`tr[data-workflow="${workflowId}"]`);
  check(held !== null, "the whole list's read was held while the search ran");
  const staleBefore = await page.evaluate(() => Number(document.body.dataset.staleReads || 0));
  await held.continue();
  // Dropped as stale, or (the failure) drawn over the search.
  await page.waitForFunction((n) => Number(document.body.dataset.staleReads || 0) > n ||
    document.querySelectorAll("table#workflows tbody tr").length > 1, {}, staleBefore);
  page.off("request", hold);
  await page.setRequestInterception(false);
  const shownRows = await page.$$eval("table#workflows tbody tr", (rows) => rows.map((r) => r.dataset.workflow));
  check(shownRows.length === 1 && shownRows[0] === workflowId,
    `the whole list answered late did not draw over the search (${shownRows.length} rows)`);
  check(decodeURIComponent(await page.evaluate(() => location.hash)).includes(`WorkflowId = "${workflowId}"`),
    "the query is kept in the URL");
  await page.goto(url + "#/workflows?query=");
  await page.waitForSelector("table#workflows tbody tr");
  await page.screenshot({ path: path.join(shots, "workflows.png"), fullPage: true });
  await page.screenshot({ path: path.join(shots, "workflows-top.png") });  // for docs/console.md

  // A run's history is what `kiln workflow show` prints: id, time and type, row for row.
  const cli = (await waitFile("cli-history")).split("\n").filter((l) => l.trim() !== "")
    .map((line) => line.trim().split(/\s+/).slice(0, 3).join(" "));
  await page.goto(url + "#/workflow?id=" + encodeURIComponent(workflowId));
  await page.waitForSelector("table#history tbody tr");
  const table = await page.$$eval("table#history tbody tr", (rows) => rows.map((r) =>
    [...r.querySelectorAll("td")].slice(0, 3).map((td) => td.textContent).join(" ")));
  check(cli.length > 0 && JSON.stringify(table) === JSON.stringify(cli),
    `the history table matches kiln workflow show (${table.length} events)`);
  // The same run: a timeline bar per activity the history scheduled, its input and result, and
  // its log stream.
  const scheduled = table.filter((row) => row.split(" ")[2] === "ActivityTaskScheduled").length;
  await page.waitForSelector("#run-timeline .row");
  const activityBars = await page.$$eval('#run-timeline .row[data-kind="activity"]', (rows) =>
    rows.map((r) => ({ width: parseFloat(r.querySelector(".bar").style.width),
      duration: r.querySelector(".duration").textContent })));
  check(scheduled > 0 && activityBars.length === scheduled &&
    activityBars.every((b) => b.width >= 0 && b.width <= 100 && /ms|s|min/.test(b.duration)),
  `the run's timeline has a bar per activity (${activityBars.length} of ${scheduled})`);
  check((await page.$eval("#input", (pre) => pre.textContent)).includes(building),
    "the run's input is shown");
  check((await page.$eval("#result", (pre) => pre.textContent)).includes(building),
    "the run's result is shown");
  await page.waitForFunction(() => document.querySelector("#run-log")?.dataset.ended === "1");
  check((await page.$eval("#run-log", (pre) => pre.textContent)).includes("step 1/2: compiling"),
    "the run's log stream is shown");
  await page.screenshot({ path: path.join(shots, "workflow.png"), fullPage: true });
  await page.screenshot({ path: path.join(shots, "workflow-top.png") });  // for docs/console.md

  // Redeploy, then roll back, from the deployment's page: each opens the new deployment.
  await page.goto(url + "#/deployment/" + encodeURIComponent(building));
  await clickLive("#redeploy");
  await page.waitForFunction((old) => location.hash.startsWith("#/deployment/") &&
    !location.hash.endsWith(encodeURIComponent(old)), {}, building);
  const redeployed = decodeURIComponent((await page.evaluate(() => location.hash)).slice("#/deployment/".length));
  await page.waitForSelector("#timeline");
  signal("redeployed", redeployed);
  await waitFile("redeploy-checked");
  check(true, `redeploy from the page started ${redeployed}, which succeeded`);
  // Only a hash change from the redeployed deployment's page, which has an enabled "Roll back"
  // too: wait for this deployment's page before clicking.
  await page.goto(url + "#/deployment/" + encodeURIComponent(building));
  await page.waitForFunction((id) => document.querySelector("h1")?.textContent.includes(id), {},
    building);
  await clickLive("#rollback:not([disabled])");
  await page.waitForFunction((old, other) => location.hash.startsWith("#/deployment/") &&
    !location.hash.endsWith(encodeURIComponent(old)) && !location.hash.endsWith(encodeURIComponent(other)),
  {}, building, redeployed);
  const rolledBack = decodeURIComponent((await page.evaluate(() => location.hash)).slice("#/deployment/".length));
  signal("rolled-back", rolledBack);
  await waitFile("rollback-checked");
  check(true, `roll back from the page started ${rolledBack}, which redeployed the image`);

  // Signal and terminate a running run from its page (the C++ side asks the engine).
  const idle = await waitFile("signal-workflow");
  await page.goto(url + "#/workflow?id=" + encodeURIComponent(idle));
  await page.waitForSelector("#signal:not([disabled])");
  await page.type("#signal-name", "poke");
  await page.type("#signal-input", '{"n": 1}');
  await page.click("#signal");
  await page.waitForFunction(() => [...document.querySelectorAll("table#history tbody tr td:nth-child(3)")]
    .some((td) => td.textContent === "WorkflowExecutionSignaled"));
  check(true, "a signal sent from the page is in the run's history");
  await page.screenshot({ path: path.join(shots, "workflow-running.png"), fullPage: true });
  signal("signaled");
  await clickLive("#terminate:not([disabled])");
  await page.waitForFunction(() => [...document.querySelectorAll(".facts .status")]
    .some((s) => s.textContent === "terminated"), { timeout: TIMEOUT });
  check(await page.$eval("#terminate", (b) => b.disabled), "terminate from the page ends the run");
  signal("terminated");
  await waitFile("terminate-checked");

  // Cancel from a deployment's page, after the confirmation.
  const toCancel = await waitFile("cancel-deployment");
  await page.goto(url + "#/deployment/" + encodeURIComponent(toCancel));
  await clickLive("#cancel:not([disabled])");
  await page.waitForFunction(() => [...document.querySelectorAll(".facts .status")]
    .some((s) => s.textContent === "canceled"));
  check(true, "cancel on a deployment's page cancels it");
  signal("canceled-deployment");

  // Cancel from a workflow's page.
  const toCancelRun = await waitFile("cancel-workflow");
  await page.goto(url + "#/workflow?id=" + encodeURIComponent("deployment/" + toCancelRun));
  await page.waitForSelector("#cancel:not([disabled])");
  // Where it waits: on its build activity (the builder holds the build).
  await page.waitForSelector('#stack tr[data-await="activity"]');
  check((await page.$eval("#stack", (t) => t.textContent)).includes("build"),
    "the stack view shows the run waiting on its build activity");
  await page.screenshot({ path: path.join(shots, "workflow-stack.png") });
  // Its log, followed on request while it runs (the wake step wrote a line).
  await page.click("#follow-log");
  await page.waitForFunction(() => document.querySelector("#run-log")?.textContent.includes("woke the builder"));
  check(true, "a running run's log stream is followed from its page");
  await page.reload();
  await clickLive("#cancel:not([disabled])");
  await page.waitForFunction(() => [...document.querySelectorAll(".facts .status")]
    .some((s) => s.textContent === "canceled"), { timeout: TIMEOUT });
  check(true, "cancel on a workflow's page cancels the run");
  signal("canceled-workflow");

  // Task queues: the platform's queues with their pollers, each project's builder queue, and
  // the builder machines.
  await page.goto(url + "#/taskqueues");
  await page.waitForSelector('tr[data-queue="kiln-platform"][data-kind="workflow"] td.pollers li');
  check((await page.$eval('tr[data-queue="kiln-platform"][data-kind="workflow"] td.pollers',
    (td) => td.textContent)).length > 0, "the task queues page shows the worker polling kiln-platform");
  const waiting = await page.$eval('tr[data-queue="kiln-platform"][data-kind="workflow"] td.pollers .waiting',
    (span) => span.textContent);
  check(/^[1-9][0-9]* waiting$/.test(waiting), `the idle worker's polls or credits wait for a task: ${waiting}`);
  const delivery = await page.$eval('tr[data-queue="kiln-platform"][data-kind="workflow"] td.pollers .delivery',
    (span) => span.textContent);
  check(delivery === "stream", `kiln-worker gets its workflow tasks pushed on a stream: ${delivery}`);
  await page.waitForSelector('tr[data-queue="project/web"] td.backlog');
  const machine = await page.$eval('tr[data-machine="web"] td.state', (td) => td.textContent);
  check(machine === "awake" || machine === "asleep", `the builder machine of web is ${machine}`);
  await page.screenshot({ path: path.join(shots, "taskqueues.png"), fullPage: true });

  // Each page's time to show its data, from the route change to the rows being there (10,000
  // workflows are in the index: the C++ side started them before this script).
  const timings = [];
  async function timePage(name, hash, selector) {
    await page.evaluate(() => { location.hash = "#/none"; });
    await page.waitForFunction(() => document.body.dataset.page === "/none");
    const start = Date.now();
    await page.evaluate((target) => { location.hash = target; }, hash);
    await page.waitForSelector(selector);
    timings.push(`${name}: ${Date.now() - start} ms`);
  }
  await timePage("projects", "#/projects", 'tr[data-project="web"]');
  await timePage("deployments", "#/deployments", "table#deployments tbody tr");
  await timePage("deployment", "#/deployment/" + encodeURIComponent(building), "#timeline .row");
  await timePage("workflows", "#/workflows", "table#workflows tbody tr");
  await timePage("workflow", "#/workflow?id=" + encodeURIComponent(workflowId), "table#history tbody tr");
  await timePage("task queues", "#/taskqueues", 'tr[data-queue="project/web"] td.backlog');
  say(`page times: ${timings.join(", ")}`);
  fs.writeFileSync(path.join(shots, "page-times.txt"), timings.join("\n") + "\n");

  // Paging through 10,000 workflows: the next page holds other runs.
  await page.goto(url + "#/workflows");
  await page.waitForSelector("table#workflows tbody tr");
  const firstPage = await page.$$eval("table#workflows tbody tr", (rows) => rows.map((r) => r.dataset.workflow));
  await page.click("#next");
  await page.waitForFunction((first) => {
    const rows = [...document.querySelectorAll("table#workflows tbody tr")];
    return rows.length > 0 && rows[0].dataset.workflow !== first;
  }, {}, firstPage[0]);
  const secondPage = await page.$$eval("table#workflows tbody tr", (rows) => rows.map((r) => r.dataset.workflow));
  check(firstPage.length === 50 && secondPage.length === 50 &&
    secondPage.every((w) => !firstPage.includes(w)), "the next page of workflows holds 50 others");
  check(decodeURIComponent(await page.evaluate(() => location.hash)).includes("page_token="),
    "the page token is kept in the URL");

  // Logging out forgets the token.
  await page.click("#logout");
  await page.waitForSelector("#login-form");
  check(await page.evaluate(() => sessionStorage.getItem("kiln.token") === null),
    "log out forgets the token");
  // The login page's 401 probe logs an error in the console; only page errors count from here.
  // A run nobody serves has no worker to answer the stack query (the page says so): expected.
  const real = problems.filter((p) => !p.includes("401") &&
    !p.startsWith("console: Failed to load resource") && !p.includes("/api/v1/workflow/stack"));
  check(real.length === 0, `no script errors or CSP refusals (${real.join("; ")})`);
} catch (error) {
  failed = true;
  say(`FAILED: ${error.message}`);
  for (const page of await browser.pages()) {
    say(`  at ${page.url()}: ${(await page.evaluate(() => document.body.innerText)).slice(0, 2000)}`);
  }
  for (const p of problems) say(`  ${p}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
