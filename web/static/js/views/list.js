// The NodeBalancers list: label, backend status, transfer, ports, ipv4 and region of
// each, refreshed every few seconds; create and delete.

import {h, replace, fmtMB} from '../dom.js';

// set fills a cell through one wrapper, so the phone layout (label left, value
// right) treats the value as one piece.
const set = (td, ...children) => replace(td, h('span', {class: 'cell'}, children));
import {all, isAbort} from '../api.js';
import {poll} from '../poll.js';
import {createNodeBalancer, deleteNodeBalancer} from './nbforms.js';

const REFRESH_MS = 5000;

export function mount(root, _params, {router}) {
  document.title = 'NodeBalancers · nodebalancer';
  const status = h('p', {class: 'muted', role: 'status'}, 'Loading…');
  const tbody = h('tbody');
  const table = h('table', {class: 'data nb-list', hidden: true},
    h('caption', {class: 'visually-hidden'}, 'Your NodeBalancers'),
    h('thead', null, h('tr', null,
      h('th', {scope: 'col'}, 'Label'),
      h('th', {scope: 'col'}, 'Backend Status'),
      h('th', {scope: 'col'}, 'Transfer'),
      h('th', {scope: 'col'}, 'Ports'),
      h('th', {scope: 'col'}, 'IP Address'),
      h('th', {scope: 'col'}, 'Region'),
      h('th', {scope: 'col'}, h('span', {class: 'visually-hidden'}, 'Actions')))),
    tbody);
  const empty = h('div', {class: 'empty', hidden: true},
    h('p', null, 'No NodeBalancers yet. A NodeBalancer listens on an address of its own and spreads the traffic of each port over your backend nodes.'));
  let known = [];
  const create = async () => {
    // The API requires a region: offer the server's own (GET /regions), falling back
    // to those of the NodeBalancers already shown.
    let regions;
    try {
      regions = (await all('/regions')).map((r) => r.id);
    } catch (e) {
      regions = [...new Set(known.map((nb) => nb.region))];
    }
    const nb = await createNodeBalancer(regions);
    if (nb) router.go(`/nodebalancers/${nb.id}/summary`);
  };
  root.append(h('section', {class: 'page'},
    h('div', {class: 'page-head'},
      h('h1', null, 'NodeBalancers'),
      h('button', {type: 'button', class: 'btn primary', onclick: create}, 'Create NodeBalancer')),
    status, table, empty));

  const rows = new Map(); // id → {tr, cells}
  const cell = (label) => h('td', {'data-label': label});

  function rowFor(nb) {
    let r = rows.get(nb.id);
    if (!r) {
      const c = {label: cell('Label'), status: cell('Backend Status'), transfer: cell('Transfer'),
        ports: cell('Ports'), ipv4: cell('IP Address'), region: cell('Region'), actions: cell('Actions')};
      c.label.classList.add('primary-cell');
      r = {tr: h('tr', {'data-id': nb.id}, Object.values(c)), c};
      r.c.actions.append(h('button', {type: 'button', class: 'btn small danger-text', onclick: async () => {
        if (await deleteNodeBalancer(r.nb)) {
          rows.get(r.nb.id)?.tr.remove();
          rows.delete(r.nb.id);
          poller.now();
        }
      }}, 'Delete', h('span', {class: 'visually-hidden'}, ` ${nb.label}`)));
      rows.set(nb.id, r);
    }
    r.nb = nb;
    return r;
  }

  async function refresh(signal) {
    try {
      const nbs = await all('/nodebalancers', {signal});
      const configs = await Promise.all(nbs.map((nb) => all(`/nodebalancers/${nb.id}/configs`, {signal}).catch((e) => {
        if (isAbort(e)) throw e;
        return null;
      })));
      known = nbs;
      status.hidden = true;
      table.hidden = nbs.length === 0;
      empty.hidden = nbs.length !== 0;
      const seen = new Set();
      nbs.forEach((nb, i) => {
        const r = rowFor(nb);
        seen.add(nb.id);
        const cfs = configs[i];
        set(r.c.label, h('a', {href: `/nodebalancers/${nb.id}/summary`}, nb.label));
        if (cfs) {
          const up = cfs.reduce((s, c) => s + (c.nodes_status?.up ?? 0), 0);
          const down = cfs.reduce((s, c) => s + (c.nodes_status?.down ?? 0), 0);
          set(r.c.status,
            h('span', {class: 'count up'}, `${up} up`), ', ',
            h('span', {class: down ? 'count down' : 'count'}, `${down} down`));
          set(r.c.ports, cfs.length ? portList(cfs) : 'none',
            h('span', {class: 'muted small'}, ` (${cfs.length} ${cfs.length === 1 ? 'config' : 'configs'})`));
        }
        set(r.c.transfer, fmtMB(nb.transfer?.total));
        set(r.c.ipv4, h('code', null, nb.ipv4));
        set(r.c.region, nb.region);
        if (tbody.children[i] !== r.tr) tbody.insertBefore(r.tr, tbody.children[i] ?? null);
      });
      for (const [id, r] of rows) {
        if (!seen.has(id)) {
          r.tr.remove();
          rows.delete(id);
        }
      }
    } catch (e) {
      if (isAbort(e)) throw e;
      status.hidden = false;
      status.textContent = `Could not load NodeBalancers: ${e.message}`;
      status.className = 'form-error';
    }
  }
  const poller = poll(refresh, REFRESH_MS);
  return {unmount() { poller.stop(); }};
}

/**
 * portList shows the ports in order, marking those this server cannot listen on; a udp
 * port reads 53/udp, since a udp config may share a tcp config's port number.
 */
function portList(cfs) {
  const out = [];
  for (const c of [...cfs].sort((a, b) => a.port - b.port)) {
    if (out.length) out.push(', ');
    // A udp config may share a tcp config's port number: say which is which.
    const name = c.protocol === 'udp' ? `${c.port}/udp` : String(c.port);
    out.push(c.listener?.state === 'failed'
      ? h('span', {class: 'count down port-failed', title: c.listener.error}, `${name} not listening`)
      : name);
  }
  return out;
}
