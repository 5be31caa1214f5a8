// The Firewall section of a NodeBalancer's Settings tab: which Cloud Firewall guards
// it (attach, create and attach, enable/disable, detach) and its inbound rules in a
// table. Every reason shown comes from the API, next to the field it names.

import {h, replace, toast} from '../dom.js';
import {get, all, post, put, del, isAbort, ApiError} from '../api.js';
import {Field, showErrors} from '../fields.js';
import {confirmDialog} from '../dialog.js';

const ACTIONS = [['ACCEPT', 'Accept'], ['DROP', 'Drop']];
const PROTOCOLS = [['TCP', 'TCP'], ['UDP', 'UDP'], ['ICMP', 'ICMP'], ['IPENCAP', 'IPENCAP']];

/** RULE_FIELDS are an inbound rule's columns, in the order the table shows them. */
const RULE_FIELDS = [
  {name: 'label', label: 'Label', type: 'text', placeholder: 'allow-office', hideLabel: true},
  {name: 'action', label: 'Action', type: 'select', options: ACTIONS, hideLabel: true},
  {name: 'protocol', label: 'Protocol', type: 'select', options: PROTOCOLS, hideLabel: true},
  {name: 'ports', label: 'Ports', type: 'text', placeholder: '80, 443, 8000-8100', hideLabel: true},
  {name: 'ipv4', label: 'IPv4 sources', type: 'text', placeholder: '192.0.2.0/24, 0.0.0.0/0', hideLabel: true},
  {name: 'ipv6', label: 'IPv6 sources', type: 'text', placeholder: '2001:db8::/32, ::/0', hideLabel: true},
];

const list = (s) => s.split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);

/** mountFirewall fills root with the Firewall section of NodeBalancer nb. */
export function mountFirewall(root, nb) {
  const body = h('div', null, h('p', {class: 'muted', role: 'status'}, 'Loading the firewall…'));
  root.append(h('section', {class: 'card firewall', 'aria-labelledby': 'fw-title'},
    h('h2', {id: 'fw-title'}, 'Firewall'), body));
  const ctl = new AbortController();
  let editor = null;

  const load = async () => {
    editor = null;
    try {
      const [mine, fws] = await Promise.all([
        get(`/nodebalancers/${nb.id}/firewalls`, {signal: ctl.signal}),
        all('/networking/firewalls', {signal: ctl.signal}),
      ]);
      if (mine.data.length) editor = attached(body, nb, mine.data[0], load);
      else detached(body, nb, fws, load);
    } catch (e) {
      if (isAbort(e)) return;
      replace(body, h('p', {class: 'form-error', role: 'alert'}, `Could not load the firewall: ${e.message}`));
    }
  };
  load();
  return {unmount() { ctl.abort(); }, isDirty: () => !!editor?.isDirty()};
}

/** detached offers to attach an existing firewall or to create one. */
function detached(body, nb, fws, reload) {
  const general = h('div', {class: 'form-error', role: 'alert', hidden: true});
  const parts = [h('p', null, 'No firewall guards this NodeBalancer: every client may connect to its ports.'), general];
  if (fws.length) {
    const pick = new Field({name: 'firewall', label: 'Firewall', type: 'select',
      options: fws.map((f) => [String(f.id), `${f.label} (${f.status})`]),
      help: 'Its inbound rules will apply to every new client of this NodeBalancer.'}, String(fws[0].id));
    const attach = h('form', {class: 'inline-form', novalidate: true, 'aria-label': 'Attach a firewall'},
      pick.el, h('div', {class: 'actions left'}, h('button', {type: 'submit', class: 'btn primary'}, 'Attach')));
    attach.addEventListener('submit', async (e) => {
      e.preventDefault();
      pick.setError([]);
      general.hidden = true;
      try {
        await post(`/networking/firewalls/${pick.get()}/devices`, {id: nb.id, type: 'nodebalancer'});
        toast('Firewall attached.');
        reload();
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        showErrors(err.errors, (name) => (name === 'id' ? pick : null), general);
      }
    });
    parts.push(attach);
  }
  const label = new Field({name: 'fw-label', label: 'New firewall label', type: 'text', placeholder: 'web-firewall',
    help: '3–32 letters, digits, -, _ and ., beginning and ending with a letter or digit.'}, '');
  const policy = new Field({name: 'fw-policy', label: 'Inbound policy', type: 'select', options: ACTIONS,
    help: 'What happens to clients no rule matches.'}, 'ACCEPT');
  const create = h('form', {class: 'inline-form', novalidate: true, 'aria-label': 'Create a firewall'},
    label.el, policy.el, h('div', {class: 'actions left'}, h('button', {type: 'submit', class: 'btn'}, 'Create and attach')));
  create.addEventListener('submit', async (e) => {
    e.preventDefault();
    label.setError([]);
    policy.setError([]);
    general.hidden = true;
    try {
      await post('/networking/firewalls', {label: label.get().trim(),
        rules: {inbound_policy: policy.get(), outbound_policy: 'ACCEPT', inbound: [], outbound: []},
        devices: {nodebalancers: [nb.id]}});
      toast('Firewall created and attached.');
      reload();
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      showErrors(err.errors, (name) => ({label, 'rules.inbound_policy': policy})[name] ?? null, general);
    }
  });
  parts.push(create);
  replace(body, ...parts);
}

/** attached shows the guarding firewall with its rules table; returns {isDirty}. */
function attached(body, nb, fw, reload) {
  const general = h('div', {class: 'form-error', role: 'alert', hidden: true});
  const status = h('span', {class: `badge ${fw.status === 'enabled' ? 'up' : 'unknown'}`}, fw.status);
  const toggle = h('button', {type: 'button', class: 'btn small', onclick: async () => {
    try {
      await put(`/networking/firewalls/${fw.id}`, {status: fw.status === 'enabled' ? 'disabled' : 'enabled'});
      toast(`Firewall ${fw.status === 'enabled' ? 'disabled' : 'enabled'}.`);
      reload();
    } catch (err) {
      toast(`Could not change the firewall: ${err.message}`, 'error');
    }
  }}, fw.status === 'enabled' ? 'Disable' : 'Enable');
  const detach = h('button', {type: 'button', class: 'btn small danger-text', onclick: async () => {
    const ok = await confirmDialog({title: `Detach ${fw.label}?`,
      body: [h('p', null, `Firewall ${fw.label} will stop filtering this NodeBalancer's clients. The firewall itself is kept.`)],
      confirm: 'Detach firewall', danger: true});
    if (!ok) return;
    try {
      const devs = await all(`/networking/firewalls/${fw.id}/devices`);
      const d = devs.find((x) => x.entity.type === 'nodebalancer' && x.entity.id === nb.id);
      if (d) await del(`/networking/firewalls/${fw.id}/devices/${d.id}`);
      toast('Firewall detached.');
      reload();
    } catch (err) {
      toast(`Could not detach the firewall: ${err.message}`, 'error');
    }
  }}, 'Detach');

  const policy = new Field({name: 'inbound_policy', label: 'Inbound policy', type: 'select', options: ACTIONS,
    help: 'What happens to clients no rule matches. Rules apply in order; the first that matches decides.'},
  fw.rules.inbound_policy);
  const rows = [];
  const rowList = h('ol', {class: 'rule-rows'});
  const empty = h('p', {class: 'muted rules-empty'}, 'No inbound rules: the policy decides for every client.');
  const addRow = (r) => {
    const fields = {};
    for (const def of RULE_FIELDS) fields[def.name] = new Field(def);
    fields.label.set(r?.label ?? '');
    fields.action.set(r?.action ?? 'ACCEPT');
    fields.protocol.set(r?.protocol ?? 'TCP');
    fields.ports.set(r?.ports ?? '');
    fields.ipv4.set((r?.addresses?.ipv4 ?? []).join(', '));
    fields.ipv6.set((r?.addresses?.ipv6 ?? []).join(', '));
    const row = {fields, el: null};
    const remove = h('button', {type: 'button', class: 'btn small link danger-text', onclick: () => {
      rows.splice(rows.indexOf(row), 1);
      row.el.remove();
      changed();
    }}, 'Remove', h('span', {class: 'visually-hidden'}, ` rule ${r?.label ?? ''}`));
    row.el = h('li', {class: 'rule-row'}, h('fieldset', null,
      h('legend', {class: 'visually-hidden'}, 'Inbound rule'),
      RULE_FIELDS.map((d) => fields[d.name].el), h('div', {class: 'row-actions'}, remove)));
    rows.push(row);
    rowList.append(row.el);
    return row;
  };
  for (const r of fw.rules.inbound) addRow(r);

  const ruleBody = (row) => {
    const f = row.fields;
    const out = {action: f.action.get(), protocol: f.protocol.get(), addresses: {}};
    if (f.label.get().trim()) out.label = f.label.get().trim();
    if (f.ports.get().trim()) out.ports = f.ports.get().trim();
    const v4 = list(f.ipv4.get());
    const v6 = list(f.ipv6.get());
    if (v4.length) out.addresses.ipv4 = v4;
    if (v6.length) out.addresses.ipv6 = v6;
    return out;
  };
  const rulesBody = () => ({inbound_policy: policy.get(), inbound: rows.map(ruleBody),
    outbound_policy: fw.rules.outbound_policy, outbound: fw.rules.outbound});
  let baseline = JSON.stringify(rulesBody());
  const dirtyNote = h('span', {class: 'dirty-note', hidden: true}, 'Unsaved changes');
  const changed = () => {
    dirtyNote.hidden = JSON.stringify(rulesBody()) === baseline;
    empty.hidden = rows.length > 0;
  };
  // "inbound[2].addresses.ipv4[0]" → the third row's IPv4 sources; "inbound[2].addresses"
  // (neither family given) → its IPv4 sources too.
  const fieldFor = (name) => {
    if (name === 'inbound_policy') return policy;
    const m = /^inbound\[(\d+)\]\.(\w+)(?:\.(ipv4|ipv6))?/.exec(name);
    if (!m || !rows[Number(m[1])]) return null;
    const f = rows[Number(m[1])].fields;
    return m[2] === 'addresses' ? f[m[3] ?? 'ipv4'] : f[m[2]] ?? null;
  };
  const save = h('button', {type: 'submit', class: 'btn primary'}, 'Save rules');
  const form = h('form', {class: 'rules-form', novalidate: true, 'aria-label': 'Inbound rules', oninput: changed, onchange: changed},
    general, policy.el,
    h('h3', null, 'Inbound rules'),
    h('div', {class: 'rule-head', 'aria-hidden': 'true'}, RULE_FIELDS.map((d) => h('span', null, d.label)), h('span')),
    rowList, empty,
    h('div', {class: 'actions'},
      h('button', {type: 'button', class: 'btn', onclick: () => { addRow(null).fields.label.input.focus(); changed(); }}, 'Add a rule'),
      dirtyNote, save));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    policy.setError([]);
    rows.forEach((r) => Object.values(r.fields).forEach((f) => f.setError([])));
    general.hidden = true;
    save.disabled = true;
    try {
      const out = await put(`/networking/firewalls/${fw.id}/rules`, rulesBody());
      fw.rules = out;
      baseline = JSON.stringify(rulesBody());
      changed();
      toast(`Rules saved (version ${out.version}).`);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      showErrors(err.errors, fieldFor, general);
    } finally {
      save.disabled = false;
    }
  });
  changed();
  replace(body,
    h('div', {class: 'fw-head'},
      h('p', null, 'Guarded by ', h('strong', null, fw.label), ' ', status),
      h('div', {class: 'actions'}, toggle, detach)),
    form);
  return {isDirty: () => JSON.stringify(rulesBody()) !== baseline};
}
