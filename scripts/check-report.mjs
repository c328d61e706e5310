// Opens an audit's report.html in headless Chromium (Playwright driving Debian's chromium)
// and prints a JSON verdict: page errors, console errors, failed requests, every figure and
// image with whether it loaded and rendered, each figure's caption, the section headings in
// order, the run record's rows as rendered, the rows of the per-class table, the text of the
// box that says what the audit cannot conclude (empty when there is none), and the number of
// rows of every table (a table with only its header row is an empty section). With a
// second argument, saves a full-page screenshot (PNG) there. Used by tests/audit.rs:
//   NPM_DIR=<folder with node_modules/playwright-core> node scripts/check-report.mjs REPORT.html [SCREENSHOT.png]
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";

const dir = process.env.NPM_DIR;
const [report, screenshot] = process.argv.slice(2);
if (!dir || !report) {
  console.error("usage: NPM_DIR=... node scripts/check-report.mjs REPORT.html [SCREENSHOT.png]");
  process.exit(2);
}
const { chromium } = await import(
  pathToFileURL(`${dir}/node_modules/playwright-core/index.mjs`).href
);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const verdict = {
  pageErrors: [], consoleErrors: [], failedRequests: [], images: [], figures: 0, title: "",
  captions: [], headings: [], runRecord: {}, classRows: 0, scope: "", tableRows: [],
};
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  page.on("pageerror", (e) => verdict.pageErrors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") verdict.consoleErrors.push(m.text()); });
  page.on("requestfailed", (r) => verdict.failedRequests.push(r.url().slice(0, 80)));
  await page.goto(pathToFileURL(resolve(report)).href, { waitUntil: "load" });
  verdict.title = await page.title();
  verdict.figures = await page.locator("figure").count();
  verdict.images = await page.$$eval("img", (imgs) =>
    imgs.map((i) => ({
      alt: i.alt.slice(0, 60),
      loaded: i.complete && i.naturalWidth > 0,
      visible: i.getBoundingClientRect().width > 0 && i.getBoundingClientRect().height > 0,
      figure: i.closest("figure") !== null,
    })),
  );
  verdict.captions = await page.$$eval("figure", (fs) =>
    fs.map((f) => ({ id: f.id, text: (f.querySelector("figcaption") || { innerText: "" }).innerText })),
  );
  verdict.headings = await page.$$eval("h2", (hs) => hs.map((h) => h.innerText.trim()));
  verdict.runRecord = await page.$$eval("#run-record + table tr", (rows) =>
    Object.fromEntries(rows.map((r) => [r.querySelector("th").innerText.trim(), r.querySelector("td").innerText.trim()])),
  );
  verdict.classRows = await page.locator("#class-table tr").count();
  verdict.scope = await page.$$eval("#scope", (s) => (s[0] ? s[0].innerText.trim() : ""));
  verdict.tableRows = await page.$$eval("table", (ts) => ts.map((t) => t.rows.length));
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
} finally {
  await browser.close();
}
console.log(JSON.stringify(verdict));
