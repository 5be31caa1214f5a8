// End-to-end test of the nodebalancer console in real headless Chromium, driven by
// playwright-core. Started by web/e2e_test.go, which runs the real server and two
// backends on loopback and passes them in the environment:
//   NB_URL            the server (console and API), e.g. http://127.0.0.1:41234
//   NB_TOKEN          an API token with the * scope
//   NB_BACKENDS       two backends, ip:port,ip:port (GET / and /health; POST /fail, /recover)
//   NB_FRONTEND_PORT  the port the test's configuration listens on
//   NB_SCREENSHOTS    where to write screenshots (on failure; every key page with NB_SHOTS=1)
// Each step prints one line; the first failure takes a screenshot, prints its path and
// exits 1.

import {chromium} from 'playwright-core';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set (run this through go test ./web)`);
  return v;
};
const BASE = env('NB_URL');
const TOKEN = env('NB_TOKEN');
const BACKENDS = env('NB_BACKENDS').split(',');
const PORT = Number(env('NB_FRONTEND_PORT'));
const SHOTS = process.env.NB_SCREENSHOTS || path.resolve('screenshots');
const ALL_SHOTS = process.env.NB_SHOTS === '1';
const UP_TIMEOUT = 30_000; // health checks every 2 s: UP comes within a few seconds
let LABEL = `e2e-${Date.now().toString(36)}`;
const LAPTOP = {width: 1366, height: 900};
const PHONE = {width: 390, height: 844};

// ---- API helper: the test checks what the console did through the API itself.
async function api(method, p, body) {
  const res = await fetch(`${BASE}/v4${p}`, {
    method,
    headers: {Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json'},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return {status: res.status, body: text ? JSON.parse(text) : null};
}

async function waitFor(what, fn, timeout = 15_000, every = 250) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

// ---- Browser
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nb-e2e-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
  viewport: LAPTOP,
});
context.setDefaultTimeout(15_000); // a shared 2-core machine runs other tests meanwhile
const page = context.pages()[0] ?? await context.newPage();
const pageErrors = [];
let allow503 = false; // set while a step makes the API fail on purpose
page.on('pageerror', (e) => pageErrors.push(`page error: ${e.message}`));
const networkChanged = [];
page.on('console', (m) => {
  // Chromium logs every 4xx answer (the refused token, the refused weight, /stats
  // before stats exist): those are the test's own doing. Anything else is a bug,
  // but for one thing outside the console: Chromium aborts requests in flight with
  // ERR_NETWORK_CHANGED when it sees the host's network change. That happened once,
  // with 16 Go test binaries beside this one (they add and remove addresses, links
  // and namespaces). A step whose own request it hits still fails on its own
  // assertions; a background poll's is only logged.
  const expected = allow503 ? /the server responded with a status of (4\d\d|503)/ : /the server responded with a status of 4\d\d/;
  if (m.type() !== 'error' || expected.test(m.text())) return;
  if (m.text().includes('net::ERR_NETWORK_CHANGED')) networkChanged.push(m.text());
  else pageErrors.push(`console error: ${m.text()}`);
});

let current = '';
let failed = false;
const started = Date.now();
let shotN = 0;

async function shot(name) {
  fs.mkdirSync(SHOTS, {recursive: true});
  const file = path.join(SHOTS, `${String(++shotN).padStart(2, '0')}-${name}.png`);
  await page.screenshot({path: file, fullPage: true});
  return file;
}

async function step(name, fn) {
  current = name;
  const t0 = Date.now();
  try {
    await fn();
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed = true;
    console.log(`FAIL ${name} (${Date.now() - t0} ms)\n${e.stack ?? e}`);
    for (const pe of pageErrors) console.log(`     ${pe}`);
    try {
      console.log(`screenshot: ${await shot(`failure-${name.replace(/\W+/g, '-')}`)}`);
    } catch (se) {
      console.log(`no screenshot: ${se.message}`);
    }
    throw e;
  }
}

const panelFor = (port) => page.locator('section.panel', {has: page.getByRole('button', {name: new RegExp(`^Port ${port}\\b`)})});
const row = (panel, i) => panel.locator('li.node-row').nth(i);

try {
  await step('sign-in form refuses a wrong token and accepts the right one', async () => {
    await page.goto(`${BASE}/nodebalancers`);
    await page.waitForURL(`${BASE}/login`);
    const field = page.getByLabel('API token', {exact: true});
    await field.fill('not-a-real-token');
    await page.getByRole('button', {name: 'Sign in'}).click();
    await page.locator('.field-token .field-error', {hasText: 'Invalid Token'}).waitFor();
    assert.equal(await field.getAttribute('aria-invalid'), 'true');
    if (ALL_SHOTS) await shot('login');
    await field.fill(TOKEN);
    await field.press('Enter');
    await page.getByRole('heading', {level: 1, name: 'NodeBalancers'}).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('nodebalancer.token')), TOKEN);
  });

  let nb;
  await step('create a NodeBalancer (label, throttle, tags) from the list', async () => {
    await page.getByRole('button', {name: 'Create NodeBalancer'}).click();
    const dlg = page.getByRole('dialog', {name: 'Create NodeBalancer'});
    // The API requires a region; the dialog offers the server's own (GET /regions).
    await page.waitForFunction(() => document.querySelector('input[name="region"]')?.value === 'local');
    await dlg.getByLabel('Label', {exact: true}).fill('x'); // too short: the API's reason shows next to the field
    await dlg.getByLabel('Client Connection Throttle', {exact: true}).fill('5');
    await dlg.getByLabel('Tags', {exact: true}).fill('e2e, web');
    await dlg.getByRole('button', {name: 'Create NodeBalancer'}).click();
    await dlg.locator('.field-label .field-error', {hasText: 'label must be 3-32 characters'}).waitFor();
    await dlg.getByLabel('Label', {exact: true}).fill(LABEL);
    await dlg.getByRole('button', {name: 'Create NodeBalancer'}).click();
    await page.getByRole('heading', {level: 1, name: LABEL}).waitFor();
    const list = (await api('GET', '/nodebalancers')).body.data;
    nb = list.find((x) => x.label === LABEL);
    assert.ok(nb, 'the NodeBalancer exists in the API');
    assert.equal(nb.client_conn_throttle, 5);
    assert.deepEqual(nb.tags, ['e2e', 'web']);
    await page.getByText(nb.ipv4, {exact: true}).first().waitFor();
    await page.getByText(nb.hostname).waitFor();
  });

  await step('add an http configuration with two backend nodes and save it', async () => {
    await page.getByRole('link', {name: 'Configurations'}).click();
    await page.getByRole('button', {name: 'Add Another Configuration'}).click();
    const panel = page.locator('section.panel[data-new]');
    const groups = panel.locator('.groups');
    const choices = (name) => groups.locator(`select[name=${name}]`).evaluate((el) => [...el.options].filter((o) => !o.hidden).map((o) => o.value));
    assert.deepEqual(await choices('protocol'), ['http', 'https', 'tcp', 'udp']);
    assert.deepEqual(await choices('algorithm'), ['roundrobin', 'leastconn', 'source']);
    assert.deepEqual(await choices('stickiness'), ['none', 'table', 'http_cookie']);
    assert.deepEqual(await choices('check'), ['none', 'connection', 'http', 'http_body']);
    assert.deepEqual(await choices('proxy_protocol'), ['none', 'v1', 'v2']);
    assert.deepEqual(await choices('cipher_suite'), ['recommended', 'legacy']);
    await groups.getByLabel('Protocol', {exact: true}).selectOption('tcp');
    await groups.getByLabel('Proxy Protocol', {exact: true}).waitFor();
    // Registered by the Go test binary alone (web/registry_test.go), for tcp only: the
    // dropdowns come from the server's registry, and follow its protocol rules.
    assert.deepEqual(await choices('algorithm'), ['roundrobin', 'leastconn', 'source', 'test_console_first']);
    assert.deepEqual(await choices('check'), ['none', 'connection', 'http', 'http_body', 'test_console_banner']);
    await groups.getByLabel('Type', {exact: true}).selectOption('test_console_banner');
    await groups.getByLabel('Expected HTTP Body', {exact: true}).waitFor();
    await groups.getByLabel('Check HTTP Path', {exact: true}).waitFor({state: 'hidden'});
    await groups.getByLabel('Protocol', {exact: true}).selectOption('https');
    await groups.getByLabel('SSL Certificate', {exact: true}).waitFor();
    await groups.getByLabel('Private Key', {exact: true}).waitFor();
    await groups.getByLabel('Proxy Protocol', {exact: true}).waitFor({state: 'hidden'});
    await groups.getByLabel('Port', {exact: true}).fill(String(PORT));
    await groups.getByLabel('Protocol', {exact: true}).selectOption('http');
    await groups.getByLabel('Algorithm', {exact: true}).selectOption('roundrobin');
    await groups.getByLabel('Type', {exact: true}).selectOption('http');
    await groups.getByLabel('Interval (seconds)', {exact: true}).fill('1');
    await groups.getByLabel('Timeout (seconds)', {exact: true}).fill('1');
    await groups.getByLabel('Attempts', {exact: true}).fill('2');
    await groups.getByLabel('Check HTTP Path', {exact: true}).fill('/health');
    for (const [i, addr] of BACKENDS.entries()) {
      await panel.getByRole('button', {name: 'Add a Node'}).click();
      const r = row(panel, i);
      const [ip, port] = addr.split(':');
      await r.getByLabel('Label', {exact: true}).fill(`web-${i + 1}`);
      await r.getByLabel('IP Address', {exact: true}).fill(ip);
      await r.getByLabel('Port', {exact: true}).fill(port);
    }
    if (ALL_SHOTS) await shot('config-new');
    // An interval of 1 s is refused: both of the API's reasons show by the field.
    await panel.getByRole('button', {name: 'Create configuration'}).click();
    const intervalError = panel.locator('.field-check_interval .field-error');
    await intervalError.waitFor();
    assert.match(await intervalError.textContent(), /check_interval must be between 2 and 3600/);
    assert.match(await intervalError.textContent(), /check_interval must be greater than check_timeout/);
    assert.equal((await api('GET', `/nodebalancers/${nb.id}/configs`)).body.results, 0, 'nothing was created');
    await groups.getByLabel('Interval (seconds)', {exact: true}).fill('2');
    await panel.getByRole('button', {name: 'Create configuration'}).click();
    await page.getByText(`Port ${PORT} saved: 2 backend nodes.`).waitFor();
    await page.waitForURL(new RegExp(`/nodebalancers/${nb.id}/configurations/\\d+$`));
    const cfgs = (await api('GET', `/nodebalancers/${nb.id}/configs`)).body.data;
    assert.equal(cfgs.length, 1);
    assert.equal(cfgs[0].port, PORT);
    assert.equal(cfgs[0].check, 'http');
    const nodes = (await api('GET', `/nodebalancers/${nb.id}/configs/${cfgs[0].id}/nodes`)).body.data;
    assert.deepEqual(nodes.map((n) => n.address).sort(), [...BACKENDS].sort());
  });

  let cfg;
  await step('see both backend nodes UP', async () => {
    cfg = (await api('GET', `/nodebalancers/${nb.id}/configs`)).body.data[0];
    const panel = panelFor(PORT);
    await waitFor('both nodes UP in the console', async () =>
      (await panel.locator('li.node-row .badge.up').count()) === 2, UP_TIMEOUT);
    assert.equal(await row(panel, 0).locator('.badge').textContent(), 'UP');
    await panel.getByRole('button', {name: /2 up, 0 down/}).waitFor();
    if (ALL_SHOTS) await shot('config-up');
  });

  await step('traffic reaches both backends through the NodeBalancer', async () => {
    const seen = new Set();
    await waitFor('answers from both backends', async () => {
      const res = await fetch(`http://${nb.ipv4}:${PORT}/`);
      seen.add((await res.text()).trim());
      return seen.size === 2;
    }, 10_000, 50);
  });

  await step('edit a node in place: mode drain and weight 80, save, verify through the API', async () => {
    const panel = panelFor(PORT);
    const r = row(panel, 0);
    await r.getByLabel('Mode', {exact: true}).selectOption('drain');
    await r.getByLabel('Weight', {exact: true}).fill('80');
    await panel.getByText('Unsaved changes').first().waitFor();
    assert.ok(await r.locator('.field-weight').evaluate((el) => el.classList.contains('changed')), 'the edited field is marked');
    if (ALL_SHOTS) await shot('config-dirty');
    await panel.getByRole('button', {name: 'Save', exact: true}).click();
    await page.getByText(`Port ${PORT} saved: 2 backend nodes.`).last().waitFor();
    await panel.getByText('Unsaved changes').first().waitFor({state: 'hidden'});
    const nodes = (await api('GET', `/nodebalancers/${nb.id}/configs/${cfg.id}/nodes`)).body.data;
    const web1 = nodes.find((n) => n.label === 'web-1');
    const web2 = nodes.find((n) => n.label === 'web-2');
    assert.equal(web1.mode, 'drain');
    assert.equal(web1.weight, 80);
    assert.equal(web2.mode, 'accept');
    assert.equal(web2.weight, 50);
  });

  await step('leaving with unsaved changes asks first', async () => {
    const panel = panelFor(PORT);
    await row(panel, 1).getByLabel('Weight', {exact: true}).fill('60');
    await page.getByRole('navigation', {name: 'Main'}).getByRole('link', {name: 'NodeBalancers'}).click();
    const dlg = page.getByRole('dialog', {name: 'Leave without saving?'});
    await dlg.waitFor();
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Stay', 'the safe choice has focus');
    await page.keyboard.press('Escape');
    await dlg.waitFor({state: 'detached'});
    assert.match(page.url(), /\/configurations\//);
    assert.equal(await row(panel, 1).getByLabel('Weight', {exact: true}).inputValue(), '60');
    await row(panel, 1).getByLabel('Weight', {exact: true}).fill('50');
    await panel.getByText('Unsaved changes').first().waitFor({state: 'hidden'});
  });

  await step('weight 300 is refused with the API reason next to the field', async () => {
    const panel = panelFor(PORT);
    const r = row(panel, 1);
    await r.getByLabel('Weight', {exact: true}).fill('300');
    await panel.getByRole('button', {name: 'Save', exact: true}).click();
    const err = r.locator('.field-weight .field-error');
    await err.waitFor();
    assert.equal((await err.textContent()).trim(), 'weight must be between 1 and 255');
    assert.equal(await r.getByLabel('Weight', {exact: true}).getAttribute('aria-invalid'), 'true');
    const describedBy = await r.getByLabel('Weight', {exact: true}).getAttribute('aria-describedby');
    assert.ok(describedBy.split(' ').includes(await err.getAttribute('id')), 'the reason describes the input');
    if (ALL_SHOTS) await shot('config-invalid');
    const nodes = (await api('GET', `/nodebalancers/${nb.id}/configs/${cfg.id}/nodes`)).body.data;
    assert.equal(nodes.find((n) => n.label === 'web-2').weight, 50, 'nothing was saved');
    assert.equal(nodes.find((n) => n.label === 'web-1').mode, 'drain', 'nothing was saved');
    await r.getByLabel('Weight', {exact: true}).fill('50');
  });

  await step('a node whose health check fails shows DOWN, and UP again when it recovers', async () => {
    const panel = panelFor(PORT);
    await fetch(`http://${BACKENDS[1]}/fail`, {method: 'POST'});
    await waitFor('web-2 DOWN', async () => (await row(panel, 1).locator('.badge').textContent()) === 'DOWN', UP_TIMEOUT);
    await panel.getByRole('button', {name: /1 up, 1 down/}).waitFor();
    if (ALL_SHOTS) await shot('config-down');
    await fetch(`http://${BACKENDS[1]}/recover`, {method: 'POST'});
    await waitFor('web-2 UP again', async () => (await row(panel, 1).locator('.badge').textContent()) === 'UP', UP_TIMEOUT);
  });

  await step('remove a node and save, by keyboard: the API keeps only the other one', async () => {
    const panel = panelFor(PORT);
    await row(panel, 1).getByRole('button', {name: /^Remove/}).focus();
    await page.keyboard.press('Enter');
    await row(panel, 1).getByText('Will be removed when you save.').waitFor();
    await row(panel, 0).getByLabel('Label', {exact: true}).press('Enter'); // submits the form: Save
    await page.getByText(`Port ${PORT} saved: 1 backend node.`).waitFor();
    await waitFor('one row left', async () => (await panel.locator('li.node-row').count()) === 1);
    const nodes = (await api('GET', `/nodebalancers/${nb.id}/configs/${cfg.id}/nodes`)).body.data;
    assert.deepEqual(nodes.map((n) => [n.label, n.mode, n.weight]), [['web-1', 'drain', 80]]);
  });

  await step('a save whose node list then fails to load says it was saved, not "fix the fields"', async () => {
    const panel = panelFor(PORT);
    const nodesURL = new RegExp(`/v4/nodebalancers/${nb.id}/configs/${cfg.id}/nodes(\\?.*)?$`);
    const failNodes = (route) => (route.request().method() === 'GET'
      ? route.fulfill({status: 503, contentType: 'application/json', body: JSON.stringify({errors: [{reason: 'Service unavailable'}]})})
      : route.continue());
    allow503 = true;
    await page.route(nodesURL, failNodes);
    const notSaved = page.getByText('Not saved: fix the fields marked in red.');
    try {
      await notSaved.first().waitFor({state: 'hidden', timeout: 10_000}); // the earlier step's toast
      await row(panel, 0).getByLabel('Weight', {exact: true}).fill('90');
      await panel.getByRole('button', {name: 'Save', exact: true}).click();
      await page.getByText(`Port ${PORT} saved, but the node list could not be refreshed (Service unavailable).`).waitFor();
      assert.equal(await notSaved.count(), 0);
      assert.equal(await panel.locator('.form-error:not([hidden])').count(), 0, 'no error is shown in the form');
      await panel.getByText('Unsaved changes').first().waitFor({state: 'hidden'});
      const nodes = (await api('GET', `/nodebalancers/${nb.id}/configs/${cfg.id}/nodes`)).body.data;
      assert.deepEqual(nodes.map((n) => [n.label, n.weight]), [['web-1', 90]]);
    } finally {
      await page.unroute(nodesURL, failNodes);
      allow503 = false;
    }
    // The next status poll reloads the panel from the API.
    await waitFor('the panel reloaded', async () => (await row(panel, 0).getByLabel('Weight', {exact: true}).inputValue()) === '90' &&
      (await row(panel, 0).locator('.badge').textContent()) !== 'not saved');
    assert.equal(await panel.getByText('Unsaved changes').first().isHidden(), true);
  });

  await step('a configuration whose port another process holds shows a banner until the port is free', async () => {
    const squatter = net.createServer();
    await new Promise((resolve, reject) => squatter.once('error', reject).listen(0, nb.ipv4, resolve));
    const busy = squatter.address().port;
    let busyCfg;
    try {
      const res = await api('POST', `/nodebalancers/${nb.id}/configs`, {port: busy, protocol: 'tcp'});
      assert.equal(res.status, 200, JSON.stringify(res.body));
      busyCfg = res.body;
      const banner = panelFor(busy).locator('.listener-banner');
      await banner.waitFor(); // the console polls every 2 s
      assert.equal(await banner.getAttribute('role'), 'alert');
      assert.match(await banner.textContent(), new RegExp(`Not listening on ${nb.ipv4.replaceAll('.', '\\.')}:${busy}: .*address already in use`));
      if (ALL_SHOTS) await shot('config-busy-port');
      // The list marks the port too.
      await page.getByRole('navigation', {name: 'Main'}).getByRole('link', {name: 'NodeBalancers'}).click();
      const tr = page.locator('tr', {has: page.getByRole('link', {name: LABEL})});
      await tr.locator('.port-failed', {hasText: `${busy} not listening`}).waitFor();
    } finally {
      squatter.close();
    }
    // The server retries the bind every few seconds; the marks go with the failure.
    const tr = page.locator('tr', {has: page.getByRole('link', {name: LABEL})});
    await tr.locator('.port-failed').waitFor({state: 'detached', timeout: 20_000});
    await tr.getByRole('link', {name: LABEL}).click();
    await page.getByRole('link', {name: 'Configurations'}).click();
    await panelFor(busy).waitFor();
    await panelFor(busy).locator('.listener-banner').waitFor({state: 'hidden', timeout: 20_000});
    assert.equal((await api('GET', `/nodebalancers/${nb.id}/configs/${busyCfg.id}`)).body.listener.state, 'open');
    assert.equal((await api('DELETE', `/nodebalancers/${nb.id}/configs/${busyCfg.id}`)).status, 200);
  });

  await step('the connections and traffic graphs move with traffic through the NodeBalancer', async () => {
    await page.getByRole('link', {name: 'Summary'}).click();
    const conn = page.locator('figure.chart', {hasText: 'Connections'});
    const traffic = page.locator('figure.chart', {hasText: 'Traffic'});
    await waitFor('the graphs drawn', async () => (await conn.getAttribute('data-state')) === 'data');
    const before = await traffic.locator('path.chart-line.s-in, circle.s-in').first().getAttribute('d').catch(() => null);
    for (let i = 0; i < 30; i++) await (await fetch(`http://${nb.ipv4}:${PORT}/`)).text();
    await waitFor('both graphs showing the traffic', async () =>
      Number(await conn.getAttribute('data-max')) > 0 && Number(await traffic.getAttribute('data-max')) > 0 &&
      (await traffic.locator('path.chart-line.s-in, circle.s-in').first().getAttribute('d').catch(() => null)) !== before,
    20_000, 500);
    const legend = await traffic.locator('.legend').textContent();
    assert.match(legend, /Inbound: now .*, max [1-9]/);
    if (ALL_SHOTS) await shot('summary');
  });

  await step('add a udp configuration with its own fields: ring_hash, source_ip, udp_check_port', async () => {
    await page.getByRole('link', {name: 'Configurations'}).click();
    await page.getByRole('button', {name: 'Add Another Configuration'}).click();
    const panel = page.locator('section.panel[data-new]');
    const groups = panel.locator('.groups');
    const choices = (name) => groups.locator(`select[name=${name}]`).evaluate((el) => [...el.options].filter((o) => !o.hidden).map((o) => o.value));
    await groups.getByLabel('Algorithm', {exact: true}).selectOption('source');
    await groups.getByLabel('Session Stickiness', {exact: true}).selectOption('table');
    await groups.getByLabel('Protocol', {exact: true}).selectOption('udp');
    // Only udp's choices are offered, and the tcp-only ones chosen before fall back.
    assert.deepEqual(await choices('algorithm'), ['roundrobin', 'leastconn', 'ring_hash']);
    assert.deepEqual(await choices('stickiness'), ['none', 'session', 'source_ip']);
    assert.equal(await groups.getByLabel('Algorithm', {exact: true}).inputValue(), 'roundrobin');
    assert.equal(await groups.getByLabel('Session Stickiness', {exact: true}).inputValue(), 'none');
    const timeout = groups.getByLabel('Session Timeout (seconds)', {exact: true});
    assert.equal(await timeout.inputValue(), '2');
    assert.equal(await timeout.getAttribute('readonly'), '');
    await groups.getByLabel('Proxy Protocol', {exact: true}).waitFor({state: 'hidden'});
    await groups.getByLabel('Port', {exact: true}).fill(String(PORT + 1));
    await groups.getByLabel('Algorithm', {exact: true}).selectOption('ring_hash');
    await groups.getByLabel('Session Stickiness', {exact: true}).selectOption('source_ip');
    await groups.getByLabel('Type', {exact: true}).selectOption('connection');
    const [ip, tcpPort] = BACKENDS[0].split(':');
    await groups.getByLabel('UDP Check Port', {exact: true}).fill(tcpPort); // the backend's TCP port answers the check
    await groups.getByLabel('Interval (seconds)', {exact: true}).fill('2');
    await groups.getByLabel('Timeout (seconds)', {exact: true}).fill('1');
    await panel.getByRole('button', {name: 'Add a Node'}).click();
    const r = row(panel, 0);
    await r.getByLabel('Label', {exact: true}).fill('dns-1');
    await r.getByLabel('IP Address', {exact: true}).fill(ip);
    await r.getByLabel('Port', {exact: true}).fill('5353');
    if (ALL_SHOTS) await shot('config-udp');
    await panel.getByRole('button', {name: 'Create configuration'}).click();
    await page.getByText(`Port ${PORT + 1} saved: 1 backend node.`).waitFor();
    const udp = (await api('GET', `/nodebalancers/${nb.id}/configs`)).body.data.find((c) => c.port === PORT + 1);
    assert.equal(udp.protocol, 'udp');
    assert.equal(udp.algorithm, 'ring_hash');
    assert.equal(udp.stickiness, 'source_ip');
    assert.equal(udp.udp_check_port, Number(tcpPort));
    assert.equal(udp.udp_session_timeout, 2);
    const udpPanel = panelFor(PORT + 1);
    await waitFor('the udp node UP through its check port', async () =>
      (await udpPanel.locator('li.node-row .badge.up').count()) === 1, UP_TIMEOUT);
  });

  await step('settings: relabel the NodeBalancer, set the udp session throttle', async () => {
    await page.getByRole('link', {name: 'Settings'}).click();
    const form = page.locator('form', {has: page.getByRole('heading', {name: 'NodeBalancer settings'})});
    await form.getByLabel('Label', {exact: true}).fill(`${LABEL}-b`);
    await form.getByLabel('Client UDP Session Throttle', {exact: true}).fill('3');
    await form.getByText('Unsaved changes').waitFor();
    await form.getByRole('button', {name: 'Save'}).click();
    await page.getByRole('heading', {level: 1, name: `${LABEL}-b`}).waitFor();
    const saved = (await api('GET', `/nodebalancers/${nb.id}`)).body;
    assert.equal(saved.label, `${LABEL}-b`);
    assert.equal(saved.client_udp_sess_throttle, 3);
    LABEL = `${LABEL}-b`;
  });

  await step('settings: a firewall guards the NodeBalancer, its rules are checked by the API, a drop and a detach take effect', async () => {
    const card = page.locator('section.firewall');
    await card.getByText('No firewall guards this NodeBalancer').waitFor();
    const label = card.getByLabel('New firewall label', {exact: true});
    await label.fill('fw'); // too short: the API's reason shows next to the field
    await card.getByRole('button', {name: 'Create and attach'}).click();
    await card.locator('.field-fw-label .field-error', {hasText: 'label must be 3-32 characters'}).waitFor();
    await label.fill(`${LABEL}-fw`);
    await card.getByRole('button', {name: 'Create and attach'}).click();
    await card.getByText('Guarded by').waitFor();
    const fws = (await api('GET', `/nodebalancers/${nb.id}/firewalls`)).body.data;
    assert.equal(fws.length, 1, 'the API shows the firewall attached');
    const fw = fws[0];
    await card.getByRole('button', {name: 'Add a rule'}).click();
    const r = card.locator('li.rule-row').nth(0);
    await r.getByLabel('Label', {exact: true}).fill('drop-loopback');
    await r.getByLabel('Action', {exact: true}).selectOption('DROP');
    await r.getByLabel('Ports', {exact: true}).fill('080'); // a leading zero: refused
    await r.getByLabel('IPv4 sources', {exact: true}).fill('127.0.0.0/8');
    await card.getByText('Unsaved changes').waitFor();
    await card.getByRole('button', {name: 'Save rules'}).click();
    const err = r.locator('.field-ports .field-error');
    await err.waitFor();
    assert.match(await err.textContent(), /'080' is not a port \(1-65535, no leading zeros\)/);
    assert.equal(await r.getByLabel('Ports', {exact: true}).getAttribute('aria-invalid'), 'true');
    assert.equal((await api('GET', `/networking/firewalls/${fw.id}/rules`)).body.inbound.length, 0, 'nothing was saved');
    if (ALL_SHOTS) await shot('firewall-invalid');
    await r.getByLabel('Ports', {exact: true}).fill(String(PORT));
    await card.getByRole('button', {name: 'Save rules'}).click();
    await page.getByText(/Rules saved \(version 2\)/).waitFor();
    const rules = (await api('GET', `/networking/firewalls/${fw.id}/rules`)).body;
    assert.deepEqual(rules.inbound.map((x) => [x.label, x.action, x.ports, x.addresses.ipv4]), [['drop-loopback', 'DROP', String(PORT), ['127.0.0.0/8']]]);
    await waitFor('a loopback client dropped', async () => {
      try { await (await fetch(`http://${nb.ipv4}:${PORT}/`)).text(); return false; } catch { return true; }
    }, 5_000, 50);
    if (ALL_SHOTS) await shot('firewall');
    await card.getByRole('button', {name: 'Detach'}).click();
    await page.getByRole('dialog', {name: `Detach ${fw.label}?`}).getByRole('button', {name: 'Detach firewall'}).click();
    await card.getByText('No firewall guards this NodeBalancer').waitFor();
    assert.equal((await api('GET', `/nodebalancers/${nb.id}/firewalls`)).body.results, 0);
    // Any answer will do (the one node left drains, so it may be a 503): the connection is no longer reset.
    await waitFor('the client answered again', async () => {
      try { await (await fetch(`http://${nb.ipv4}:${PORT}/`)).text(); return true; } catch { return false; }
    }, 5_000, 50);
    assert.equal((await api('DELETE', `/networking/firewalls/${fw.id}`)).status, 200);
  });

  await step('the list shows ipv4, region, ports and nodes up/down', async () => {
    await page.getByRole('navigation', {name: 'Main'}).getByRole('link', {name: 'NodeBalancers'}).click();
    const tr = page.locator('tr', {has: page.getByRole('link', {name: LABEL})});
    await tr.getByText(nb.ipv4).waitFor();
    await tr.getByText(`${PORT}, ${PORT + 1}/udp`).waitFor();
    // The http config's one node and the udp config's one.
    await waitFor('2 up in the list', async () => /2 up, 0 down/.test(await tr.textContent()), UP_TIMEOUT);
    if (ALL_SHOTS) {
      await shot('list');
      await page.setViewportSize(PHONE);
      await shot('list-phone');
      await page.goto(`${BASE}/nodebalancers/${nb.id}/configurations/${cfg.id}`);
      await panelFor(PORT).locator('li.node-row').first().waitFor();
      await shot('config-phone');
      await page.getByRole('link', {name: 'Summary'}).click();
      await page.locator('figure.chart').first().waitFor();
      await shot('summary-phone');
      await page.setViewportSize(LAPTOP);
      await page.getByRole('navigation', {name: 'Main'}).getByRole('link', {name: 'NodeBalancers'}).click();
    }
  });

  await step('delete the NodeBalancer after confirming', async () => {
    const tr = page.locator('tr', {has: page.getByRole('link', {name: LABEL})});
    await tr.getByRole('button', {name: `Delete ${LABEL}`}).click();
    const dlg = page.getByRole('dialog', {name: `Delete ${LABEL}?`});
    await dlg.getByRole('button', {name: 'Delete NodeBalancer'}).click();
    await tr.waitFor({state: 'detached'});
    assert.equal((await api('GET', `/nodebalancers/${nb.id}`)).status, 404);
  });

  await step('sign out forgets the token', async () => {
    await page.getByRole('button', {name: 'Sign out'}).click();
    await page.waitForURL(`${BASE}/login`);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('nodebalancer.token')), null);
    await page.goto(`${BASE}/nodebalancers`);
    await page.waitForURL(`${BASE}/login`);
  });

  await step('no script errors and no CSP violations', async () => {
    for (const e of networkChanged) console.log(`note: the host's network changed under a request (other tests): ${e}`);
    assert.deepEqual(pageErrors, []);
  });
} catch {
  // step() printed the failure and took the screenshot.
} finally {
  await context.close().catch(() => {});
  fs.rmSync(userDataDir, {recursive: true, force: true});
}
console.log(`${failed ? 'FAILED at: ' + current : 'all steps passed'} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
process.exit(failed ? 1 : 0);
