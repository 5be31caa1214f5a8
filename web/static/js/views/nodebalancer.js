// One NodeBalancer: its summary and live graphs, its Configurations (one panel per
// port, with Backend Nodes) and its Settings. Each tab has its own address.

import {h, replace, fmtMB, toast} from '../dom.js';
import {get, put, isAbort, ApiError} from '../api.js';
import {poll} from '../poll.js';
import {LineChart, fmtBits} from '../chart.js';
import {showErrors} from '../fields.js';
import {mountConfigs} from './configs.js';
import {mountFirewall} from './firewall.js';
import {nbFields, nbBody, nbFieldFor, deleteNodeBalancer} from './nbforms.js';

const TABS = [['summary', 'Summary'], ['configurations', 'Configurations'], ['settings', 'Settings']];
const SUMMARY_MS = 5000;

export function mount(root, params, {router}) {
  const id = Number(params.id);
  const tab = location.pathname.split('/')[3] || 'summary';
  const title = h('h1', null, `NodeBalancer ${id}`);
  const crumbLabel = h('span', {'aria-current': 'page'}, `NodeBalancer ${id}`);
  const body = h('div', {class: 'tab-body'}, h('p', {class: 'muted', role: 'status'}, 'Loading…'));
  const tabs = h('nav', {class: 'tabs', 'aria-label': 'NodeBalancer sections'},
    h('ul', null, TABS.map(([key, text]) => h('li', null,
      h('a', {href: `/nodebalancers/${id}/${key}`, 'aria-current': key === tab ? 'page' : null}, text)))));
  root.append(h('section', {class: 'page'},
    h('nav', {class: 'crumbs', 'aria-label': 'Breadcrumb'},
      h('ol', null, h('li', null, h('a', {href: '/nodebalancers'}, 'NodeBalancers')), h('li', null, crumbLabel))),
    h('div', {class: 'page-head'}, title),
    tabs, body));

  let inner = null; // the tab's own {unmount, isDirty, update}
  let stopped = false;
  const ctl = new AbortController();
  get(`/nodebalancers/${id}`, {signal: ctl.signal}).then((nb) => {
    if (stopped) return;
    title.textContent = nb.label;
    crumbLabel.textContent = nb.label;
    document.title = `${nb.label} · ${TABS.find(([k]) => k === tab)?.[1] ?? ''} · nodebalancer`;
    body.replaceChildren();
    if (tab === 'summary') inner = mountSummary(body, nb);
    else if (tab === 'configurations') inner = mountConfigs(body, nb, params, router);
    else inner = mountSettings(body, nb, router, (label) => {
      title.textContent = label;
      crumbLabel.textContent = label;
    });
  }).catch((e) => {
    if (isAbort(e)) return;
    replace(body, h('p', {class: 'form-error', role: 'alert'}, e.status === 404
      ? 'This NodeBalancer does not exist (it may have been deleted). '
      : `Could not load this NodeBalancer: ${e.message} `, h('a', {href: '/nodebalancers'}, 'Back to NodeBalancers')));
  });

  return {
    unmount() {
      stopped = true;
      ctl.abort();
      inner?.unmount();
    },
    isDirty: () => !!inner?.isDirty?.(),
    update: (p) => inner?.update?.(p),
  };
}

function mountSummary(root, first) {
  const dl = h('dl', {class: 'details'});
  const render = (nb) => replace(dl,
    h('div', null, h('dt', null, 'IP Address'), h('dd', null, h('code', null, nb.ipv4))),
    nb.ipv6 ? h('div', null, h('dt', null, 'IPv6'), h('dd', null, h('code', null, nb.ipv6))) : null,
    h('div', null, h('dt', null, 'Hostname'), h('dd', null, h('code', {class: 'wrap'}, nb.hostname))),
    h('div', null, h('dt', null, 'Region'), h('dd', null, nb.region)),
    h('div', null, h('dt', null, 'Client Connection Throttle'),
      h('dd', null, nb.client_conn_throttle ? `${nb.client_conn_throttle} per second` : 'off')),
    h('div', null, h('dt', null, 'Client UDP Session Throttle'),
      h('dd', null, nb.client_udp_sess_throttle ? `${nb.client_udp_sess_throttle} per second` : 'off')),
    h('div', null, h('dt', null, 'Tags'), h('dd', {class: 'tags'},
      nb.tags.length ? nb.tags.map((t) => h('span', {class: 'tag'}, t)) : h('span', {class: 'muted'}, 'none'))),
    h('div', null, h('dt', null, 'Transfer this month'), h('dd', null,
      `${fmtMB(nb.transfer?.total)} (in ${fmtMB(nb.transfer?.in)}, out ${fmtMB(nb.transfer?.out)})`)),
    h('div', null, h('dt', null, 'Type'), h('dd', null, nb.type ?? 'common')),
    h('div', null, h('dt', null, 'Created'), h('dd', null, h('time', {datetime: `${nb.created}Z`}, `${nb.created.replace('T', ' ')} UTC`))));
  render(first);
  const conn = new LineChart({title: 'Connections (CXN/s)',
    series: [{key: 'connections', label: 'Connections', cls: 's-conn'}]});
  const traffic = new LineChart({title: 'Traffic (bits/s)', format: fmtBits, minStep: 1,
    series: [{key: 'in', label: 'Inbound', cls: 's-in'}, {key: 'out', label: 'Outbound', cls: 's-out'}]});
  const updated = h('p', {class: 'muted small', 'aria-live': 'off'});
  // period=hour (10-second averages) is this server's live view; Linode's own
  // series is the day of 5-minute averages, which every server answers.
  const period = h('select', {id: 'graph-period', onchange: () => poller.now()},
    h('option', {value: 'hour'}, 'Last hour (10 s averages)'),
    h('option', {value: 'day'}, 'Last 24 hours (5 min averages)'));
  root.append(
    h('div', {class: 'summary-grid'},
      h('section', {class: 'card', 'aria-labelledby': 'sum-details'}, h('h2', {id: 'sum-details'}, 'Details'), dl),
      h('section', {class: 'card graphs', 'aria-labelledby': 'sum-graphs'},
        h('div', {class: 'graphs-head'}, h('h2', {id: 'sum-graphs'}, 'Graphs'),
          h('div', {class: 'inline-field'}, h('label', {for: 'graph-period'}, 'Period'), period)),
        conn.el, traffic.el, updated)));
  let hourSupported = true;
  const loadStats = async (signal) => {
    const hour = period.value === 'hour' && hourSupported;
    try {
      return await get(`/nodebalancers/${first.id}/stats${hour ? '?period=hour' : ''}`, {signal});
    } catch (e) {
      if (isAbort(e)) throw e;
      if (hour && e.status === 400 && e.errors.some((x) => x.field === 'period')) {
        hourSupported = false; // a server without the live view: show the day
        period.value = 'day';
        period.disabled = true;
        return loadStats(signal);
      }
      return e;
    }
  };
  const poller = poll(async (signal) => {
    const [nb, stats] = await Promise.all([
      get(`/nodebalancers/${first.id}`, {signal}).catch((e) => (isAbort(e) ? Promise.reject(e) : null)),
      loadStats(signal),
    ]);
    if (nb) render(nb);
    if (stats instanceof ApiError || !stats?.data) {
      const msg = stats?.status === 404 || !stats?.data ? 'No data yet' : `Statistics unavailable: ${stats.message}`;
      conn.setData(null, msg);
      traffic.setData(null, msg);
    } else {
      conn.setData({connections: stats.data.connections});
      traffic.setData({in: stats.data.traffic?.in, out: stats.data.traffic?.out});
    }
    updated.textContent = `${stats?.title ? `${stats.title}. ` : ''}Updated ${new Date().toLocaleTimeString()}; refreshes every ${SUMMARY_MS / 1000} s.`;
  }, SUMMARY_MS);
  return {unmount() { poller.stop(); conn.destroy(); traffic.destroy(); }};
}

function mountSettings(root, nb, router, onLabel) {
  let saved = nb;
  const f = nbFields(nb);
  const general = h('div', {class: 'form-error', role: 'alert', hidden: true});
  const dirtyNote = h('span', {class: 'dirty-note', hidden: true}, 'Unsaved changes');
  const save = h('button', {type: 'submit', class: 'btn primary'}, 'Save');
  const values = () => JSON.stringify(nbBody(f));
  let baseline = values();
  const markDirty = () => {
    const d = values() !== baseline;
    dirtyNote.hidden = !d;
    f.label.setChanged(f.label.get() !== saved.label);
    f.client_conn_throttle.setChanged(f.client_conn_throttle.get() !== saved.client_conn_throttle);
    f.client_udp_sess_throttle.setChanged(f.client_udp_sess_throttle.get() !== saved.client_udp_sess_throttle);
    f.tags.setChanged(JSON.stringify(f.tags.get()) !== JSON.stringify(saved.tags));
  };
  const form = h('form', {class: 'card', novalidate: true, 'aria-labelledby': 'set-title', oninput: markDirty, onchange: markDirty},
    h('h2', {id: 'set-title'}, 'NodeBalancer settings'), general,
    f.label.el, f.client_conn_throttle.el, f.client_udp_sess_throttle.el, f.tags.el,
    h('div', {class: 'actions'}, dirtyNote, save));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    Object.values(f).forEach((x) => x.setError([]));
    general.hidden = true;
    save.disabled = true;
    try {
      saved = await put(`/nodebalancers/${nb.id}`, nbBody(f));
      f.label.set(saved.label);
      f.tags.set(saved.tags);
      f.client_conn_throttle.set(saved.client_conn_throttle);
      f.client_udp_sess_throttle.set(saved.client_udp_sess_throttle);
      baseline = values();
      markDirty();
      onLabel(saved.label);
      toast('Settings saved.');
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      showErrors(err.errors, nbFieldFor(f), general);
    } finally {
      save.disabled = false;
    }
  });
  const danger = h('section', {class: 'card danger-zone', 'aria-labelledby': 'del-title'},
    h('h2', {id: 'del-title'}, 'Delete NodeBalancer'),
    h('p', null, 'Deleting a NodeBalancer stops its ports and removes its configurations and backend nodes. Your backend servers are not touched.'),
    h('button', {type: 'button', class: 'btn danger', onclick: async () => {
      if (await deleteNodeBalancer(saved)) router.go('/nodebalancers', {force: true});
    }}, 'Delete'));
  root.append(h('div', {class: 'settings'}, form, danger));
  const wide = h('div', {class: 'settings-wide'});
  root.append(wide);
  const fw = mountFirewall(wide, saved);
  return {unmount() { fw.unmount(); }, isDirty: () => values() !== baseline || fw.isDirty()};
}
