// The Configurations tab: one panel per port with every config field, and the Backend
// Nodes section (Add a Node, edit in place, Remove, Save). Save sends the config and
// the whole node set in one rebuild request, so it applies all at once or not at all.

import {h, id, replace, toast, announce} from '../dom.js';
import {all, post, del, isAbort, ApiError} from '../api.js';
import {poll} from '../poll.js';
import {confirmDialog} from '../dialog.js';
import {Field, CONFIG_GROUPS, CONFIG_DEFAULTS, NODE_FIELDS, CHOICES, splitAddress, joinAddress} from '../fields.js';

/** STATUS_MS is how often node statuses refresh: at most one check interval (2 s minimum). */
const STATUS_MS = 2000;
const NODE_DEFAULTS = {label: '', ip: '', port: null, weight: 50, mode: 'accept'};
const choiceText = (name, v) => CHOICES[name]?.find(([k]) => k === v)?.[1] ?? v;

export function mountConfigs(root, nb, params, router) {
  const panels = new Map(); // key (config id or "new-N") → ConfigPanel
  const list = h('div', {class: 'panels'});
  const status = h('p', {class: 'muted', role: 'status'}, 'Loading configurations…');
  const addBtn = h('button', {type: 'button', class: 'btn', onclick: () => {
    const p = new ConfigPanel(nb, null, [], ctx);
    panels.set(p.key, p);
    list.append(p.el);
    p.setOpen(true);
    p.fields.port.input.focus();
    status.hidden = true;
  }}, 'Add Another Configuration');
  root.append(
    h('div', {class: 'section-head'},
      h('h2', null, 'Configurations'),
      h('p', {class: 'muted'}, 'Each configuration is one inbound port on ', h('code', null, nb.ipv4),
        ' and the backend nodes that serve it.')),
    status, list, h('div', {class: 'actions left'}, addBtn));

  const ctx = {
    nb, router,
    saved(panel, oldKey) {
      panels.delete(oldKey);
      panels.set(panel.key, panel);
      router.go(`/nodebalancers/${nb.id}/configurations/${panel.cfg.id}`, {replace: true});
    },
    removed(panel) {
      panels.delete(panel.key);
      panel.el.remove();
      if (!panels.size) { status.hidden = false; status.textContent = 'No configurations yet.'; }
      router.go(`/nodebalancers/${nb.id}/configurations`, {replace: true});
    },
    opened(panel, open) {
      if (open && panel.cfg) router.go(`/nodebalancers/${nb.id}/configurations/${panel.cfg.id}`, {replace: true});
    },
  };

  let wanted = params.configId ? Number(params.configId) : null;
  let first = true;
  const poller = poll(async (signal) => {
    const startedAt = performance.now();
    const cfgs = await all(`/nodebalancers/${nb.id}/configs`, {signal});
    cfgs.sort((a, b) => a.port - b.port);
    const nodes = await Promise.all(cfgs.map((c) => all(`/nodebalancers/${nb.id}/configs/${c.id}/nodes`, {signal})
      .catch((e) => (isAbort(e) ? Promise.reject(e) : null))));
    const nodesOf = new Map(cfgs.map((c, i) => [c.id, nodes[i]]));
    for (const c of cfgs) {
      let p = panels.get(c.id);
      if (!p) {
        p = new ConfigPanel(nb, c, nodesOf.get(c.id) ?? [], ctx);
        panels.set(c.id, p);
        // Keep the panels in port order; unsaved new panels stay last.
        const after = [...list.children].find((el) => Number(el.dataset.port) > c.port && el.dataset.configId);
        list.insertBefore(p.el, after ?? list.querySelector('[data-new]'));
      } else {
        p.refresh(c, nodesOf.get(c.id), startedAt);
      }
    }
    if (first) {
      first = false;
      const p = panels.get(wanted) ?? (cfgs.length === 1 ? panels.get(cfgs[0].id) : null);
      if (p) {
        p.setOpen(true, false);
        if (wanted) p.el.scrollIntoView({block: 'start'});
      }
    }
    status.hidden = panels.size > 0;
    status.textContent = 'No configurations yet. Add one to start listening on a port.';
  }, STATUS_MS);

  return {
    unmount() {
      poller.stop();
    },
    isDirty: () => [...panels.values()].some((p) => p.isDirty()),
    update(p) {
      wanted = p.configId ? Number(p.configId) : null;
      const panel = panels.get(wanted);
      if (panel && !panel.open) {
        panel.setOpen(true, false);
        panel.el.scrollIntoView({block: 'start'});
      }
    },
  };
}

let newSeq = 0;

/** ConfigPanel is one port's configuration form with its Backend Nodes. */
class ConfigPanel {
  constructor(nb, cfg, nodes, ctx) {
    this.nb = nb;
    this.ctx = ctx;
    this.cfg = cfg;
    this.key = cfg ? cfg.id : `new-${++newSeq}`;
    this.open = false;
    this.rows = [];
    const bodyId = id('cfg-body');
    this.titleText = h('span', {class: 'panel-title'});
    this.summary = h('span', {class: 'panel-summary'});
    this.dirtyMark = h('span', {class: 'dirty-note', hidden: true}, 'Unsaved changes');
    this.toggle = h('button', {type: 'button', class: 'panel-toggle', 'aria-expanded': 'false', 'aria-controls': bodyId,
      onclick: () => this.setOpen(!this.open)}, this.titleText, ' ', this.summary);
    this.general = h('div', {class: 'form-error', role: 'alert', hidden: true});
    // listenerBanner: this server's "listener" field says the port could not be bound.
    this.listenerBanner = h('div', {class: 'form-error listener-banner', role: 'alert', hidden: true});

    this.fields = {};
    const groups = CONFIG_GROUPS.map((g) => h('fieldset', {class: 'group'}, h('legend', null, g.title),
      g.fields.map((def) => {
        const f = new Field(def, null);
        this.fields[def.name] = f;
        return f.el;
      })));
    this.certInfo = h('p', {class: 'cert-info', hidden: true});
    this.fields.ssl_cert.el.prepend(this.certInfo);

    this.rowList = h('ol', {class: 'node-rows'});
    this.nodesEmpty = h('p', {class: 'muted nodes-empty'}, 'No backend nodes yet. Add at least two to balance traffic.');
    this.nodesError = h('div', {class: 'form-error', role: 'alert', hidden: true});
    const nodesTitle = id('nodes-title');
    const nodesSection = h('section', {class: 'backend-nodes', 'aria-labelledby': nodesTitle},
      h('h3', {id: nodesTitle}, 'Backend Nodes'),
      this.nodesError,
      this.nodeHead = h('div', {class: 'node-head', 'aria-hidden': 'true'},
        NODE_FIELDS.map((d) => h('span', null, d.label)), h('span', null, 'Status'), h('span')),
      this.rowList, this.nodesEmpty,
      h('button', {type: 'button', class: 'btn', onclick: () => this.addRow(null, true)}, 'Add a Node'));

    this.saveBtn = h('button', {type: 'submit', class: 'btn primary'}, cfg ? 'Save' : 'Create configuration');
    const extra = cfg
      ? h('button', {type: 'button', class: 'btn danger-text', onclick: () => this.remove()}, 'Delete configuration')
      : h('button', {type: 'button', class: 'btn', onclick: () => this.discard()}, 'Discard');
    this.form = h('form', {novalidate: true, class: 'config-form',
      oninput: () => this.changed(), onchange: () => this.changed(), onsubmit: (e) => { e.preventDefault(); this.save(); }},
    this.general, h('div', {class: 'groups'}, groups), nodesSection,
    h('div', {class: 'actions sticky'}, this.dirtyMark.cloneNode(true), extra, this.saveBtn));
    this.footDirty = this.form.querySelector('.actions .dirty-note');
    this.body = h('div', {class: 'panel-body', id: bodyId, hidden: true}, this.form);
    this.el = h('section', {class: 'panel', 'data-config-id': cfg?.id ?? null, 'data-new': cfg ? null : 'true',
      'data-port': cfg?.port ?? null}, h('h3', {class: 'panel-head'}, this.toggle, this.dirtyMark), this.listenerBanner, this.body);
    this.load(cfg ?? {...CONFIG_DEFAULTS, nodes_status: {up: 0, down: 0}}, nodes, !cfg);
  }

  /** load shows a config and its nodes as saved (the baseline for "unsaved"). */
  load(cfg, nodes, isNew = false) {
    this.shown = cfg;
    this.stale = false;
    this.loadedAt = performance.now();
    for (const [name, f] of Object.entries(this.fields)) {
      if (name === 'ssl_cert' || name === 'ssl_key') f.set('');
      else f.set(cfg[name]);
      f.setError([]);
    }
    if (isNew) this.fields.port.set(null);
    const hasCert = cfg.ssl_cert === '<REDACTED>';
    this.certInfo.hidden = !hasCert;
    this.certInfo.textContent = hasCert
      ? `A certificate is stored${cfg.ssl_commonname ? ` for ${cfg.ssl_commonname}` : ''}${cfg.ssl_fingerprint ? ` (fingerprint ${cfg.ssl_fingerprint})` : ''}. Leave these empty to keep it, or paste a new certificate and key.`
      : '';
    this.rowList.replaceChildren();
    this.rows = [];
    for (const n of nodes ?? []) this.addRow(n, false);
    this.general.hidden = true;
    this.nodesError.hidden = true;
    this.baseline = this.snapshot();
    this.renderHead();
    this.changed();
  }

  /** refresh takes a polled config (and, when open, its nodes): statuses only, never the user's edits. */
  refresh(cfg, nodes, startedAt) {
    if (this.saving || startedAt < this.loadedAt) return; // older than what is shown
    if (!this.isDirty() && !this.saving && nodes && (this.stale || this.nodesChangedElsewhere(cfg, nodes))) {
      this.cfg = cfg;
      this.load(cfg, nodes);
      return;
    }
    this.cfg = {...this.cfg, nodes_status: cfg.nodes_status, listener: cfg.listener};
    this.renderHead();
    if (!nodes) return;
    const byId = new Map(nodes.map((n) => [n.id, n]));
    for (const r of this.rows) {
      const n = r.id && byId.get(r.id);
      if (n) this.setStatus(r, n.status);
    }
  }

  /** nodesChangedElsewhere: another client changed this config since it was loaded. */
  nodesChangedElsewhere(cfg, nodes) {
    const strip = (c) => JSON.stringify({...c, nodes_status: null, listener: null});
    if (strip(cfg) !== strip(this.shown)) return true;
    const mine = this.rows.filter((r) => r.id).map((r) => JSON.stringify(r.saved));
    const theirs = nodes.map((n) => JSON.stringify(nodeValues(n)));
    return mine.join() !== theirs.join();
  }

  renderHead() {
    const c = this.cfg;
    this.el.dataset.port = c?.port ?? '';
    this.titleText.textContent = c ? `Port ${c.port}` : 'New configuration';
    replace(this.summary, c
      ? [choiceText('protocol', c.protocol), ' · ',
        h('span', {class: 'count up'}, `${c.nodes_status?.up ?? 0} up`), ', ',
        h('span', {class: c.nodes_status?.down ? 'count down' : 'count'}, `${c.nodes_status?.down ?? 0} down`)]
      : 'not saved yet');
    this.renderListener(c?.listener);
  }

  /** renderListener shows a banner while the server cannot listen on this port. */
  renderListener(l) {
    const failed = l?.state === 'failed';
    const was = !this.listenerBanner.hidden;
    this.listenerBanner.hidden = !failed;
    this.el.classList.toggle('listener-failed', failed);
    if (!failed) {
      if (was) announce(`Port ${this.cfg?.port} is listening now.`);
      return;
    }
    this.listenerBanner.textContent = `Not listening on ${l.address || `port ${this.cfg?.port}`}: ${l.error}. ` +
      `The server retries every few seconds${l.since ? ` (failing since ${l.since} UTC)` : ''}; ` +
      'free the port or move this configuration to another one.';
  }

  setOpen(open, notify = true) {
    this.open = open;
    this.toggle.setAttribute('aria-expanded', String(open));
    this.body.hidden = !open;
    if (notify) this.ctx.opened(this, open);
  }

  // ---- Backend node rows

  addRow(node, focus) {
    const v = node ? nodeValues(node) : {...NODE_DEFAULTS};
    const r = {id: node?.id ?? null, saved: node ? v : null, removed: false, fields: {}};
    const legend = h('legend', {class: 'visually-hidden'});
    for (const def of NODE_FIELDS) r.fields[def.name] = new Field(def, v[def.name]);
    r.status = h('span', {class: 'badge'});
    r.statusWrap = h('div', {class: 'field field-status'},
      h('span', {class: 'label-text narrow-only'}, 'Status'), r.status);
    r.error = h('p', {class: 'field-error row-error', hidden: true});
    r.note = h('p', {class: 'row-note', hidden: true});
    r.removeBtn = h('button', {type: 'button', class: 'btn small danger-text remove'});
    r.removeBtn.addEventListener('click', () => this.removeRow(r));
    r.el = h('li', {class: 'node-row', 'data-node-id': r.id},
      h('fieldset', null, legend, Object.values(r.fields).map((f) => f.el), r.statusWrap,
        h('div', {class: 'row-actions'}, r.removeBtn), r.note, r.error));
    r.legend = legend;
    this.rows.push(r);
    this.rowList.append(r.el);
    this.setStatus(r, node ? node.status : null);
    this.renderRow(r);
    if (focus) {
      this.changed();
      r.fields.label.input.focus();
    }
    return r;
  }

  removeRow(r) {
    if (!r.id) {
      this.rows.splice(this.rows.indexOf(r), 1);
      r.el.remove();
      announce('Node removed from the list.');
      this.changed();
      this.rowList.querySelector('.node-row:last-child .remove')?.focus();
      return;
    }
    r.removed = !r.removed;
    announce(r.removed ? `Node ${r.saved.label} will be removed when you save.` : `Node ${r.saved.label} kept.`);
    this.renderRow(r);
    this.changed();
    r.removeBtn.focus();
  }

  renderRow(r) {
    const i = this.rows.indexOf(r) + 1;
    r.legend.textContent = `Node ${i}${r.saved ? `: ${r.saved.label}` : ' (new)'}`;
    r.el.classList.toggle('removed', r.removed);
    r.el.classList.toggle('new', !r.id);
    for (const f of Object.values(r.fields)) f.input.disabled = r.removed;
    const name = r.saved?.label ?? 'new node';
    replace(r.removeBtn, r.removed ? 'Undo' : 'Remove', h('span', {class: 'visually-hidden'}, ` ${name}`));
    r.note.hidden = !(r.removed || !r.id);
    r.note.textContent = r.removed ? 'Will be removed when you save.'
      : !r.id ? (this.stale ? 'Saved: its details load in a moment.' : 'New: added when you save.') : '';
  }

  setStatus(r, status) {
    const s = r.id || this.stale ? (status || 'Unknown') : 'new';
    if (r.statusValue && r.statusValue !== s && r.statusValue !== 'new') {
      announce(`Node ${r.saved?.label ?? ''} on port ${this.cfg?.port} is now ${s}.`);
    }
    r.statusValue = s;
    r.status.className = `badge ${s === 'UP' ? 'up' : s === 'DOWN' ? 'down' : s === 'new' ? 'new' : 'unknown'}`;
    r.status.textContent = s === 'new' ? 'not saved' : s;
    r.el.dataset.status = s;
  }

  // ---- Unsaved changes

  configValues() {
    const vals = {};
    for (const [name, f] of Object.entries(this.fields)) vals[name] = f.get();
    return vals;
  }

  snapshot() {
    return JSON.stringify({
      c: this.configValues(),
      n: this.rows.map((r) => ({id: r.id, removed: r.removed, ...this.rowValues(r)})),
    });
  }

  rowValues(r) {
    const out = {};
    for (const [k, f] of Object.entries(r.fields)) out[k] = f.get();
    return out;
  }

  isDirty() { return this.snapshot() !== this.baseline || !this.cfg; }

  changed() {
    let vals = this.configValues();
    for (const group of CONFIG_GROUPS) {
      for (const def of group.fields) {
        if (def.optionAllowed) this.fields[def.name].limitOptions((v) => def.optionAllowed(v, vals));
      }
    }
    vals = this.configValues();
    for (const group of CONFIG_GROUPS) {
      for (const def of group.fields) {
        const f = this.fields[def.name];
        f.show(!def.when || def.when(vals));
      }
    }
    const base = JSON.parse(this.baseline);
    for (const [name, f] of Object.entries(this.fields)) {
      f.setChanged(JSON.stringify(f.get()) !== JSON.stringify(base.c[name]));
    }
    for (const r of this.rows) {
      const now = this.rowValues(r);
      for (const [k, f] of Object.entries(r.fields)) f.setChanged(!!r.saved && now[k] !== r.saved[k]);
      r.el.classList.toggle('changed', !!r.saved && JSON.stringify(now) !== JSON.stringify(r.saved));
    }
    this.nodesEmpty.hidden = this.rows.length > 0;
    this.nodeHead.hidden = this.rows.length === 0;
    const dirty = this.isDirty() && !!this.cfg;
    this.dirtyMark.hidden = !dirty;
    this.footDirty.hidden = !dirty;
    this.el.classList.toggle('dirty', dirty);
  }

  // ---- Save, delete

  /** body is the request: the visible config fields and every kept node. */
  requestBody() {
    const vals = this.configValues();
    const out = {};
    const missing = [];
    for (const group of CONFIG_GROUPS) {
      for (const def of group.fields) {
        const v = vals[def.name];
        const visible = !def.when || def.when(vals);
        if (def.readonly) continue;
        if (def.name === 'ssl_cert' || def.name === 'ssl_key') {
          if (visible && v.trim()) out[def.name] = v;
          continue;
        }
        if (def.name === 'proxy_protocol' && !visible) {
          out.proxy_protocol = 'none';
          continue;
        }
        if (def.type === 'number' && v === null) {
          if (visible) missing.push({field: def.name, reason: `${def.label} is required: enter a whole number.`});
          continue;
        }
        out[def.name] = v;
      }
    }
    const kept = this.rows.filter((r) => !r.removed);
    out.nodes = kept.map((r, i) => {
      const v = this.rowValues(r);
      if (v.port === null) missing.push({field: `nodes[${i}].port`, reason: 'Port is required: enter a whole number.'});
      if (v.weight === null) missing.push({field: `nodes[${i}].weight`, reason: 'Weight is required: enter a whole number.'});
      const n = {label: v.label.trim(), address: joinAddress(v.ip, v.port), weight: v.weight ?? 0, mode: v.mode};
      if (r.id) n.id = r.id;
      return n;
    });
    return {body: out, kept, missing};
  }

  clearErrors() {
    for (const f of Object.values(this.fields)) f.setError([]);
    for (const r of this.rows) {
      for (const f of Object.values(r.fields)) f.setError([]);
      r.error.hidden = true;
    }
    this.general.hidden = true;
    this.nodesError.hidden = true;
  }

  /**
   * showErrors puts each API reason next to what it is about: a config field, a
   * node's field (nodes[i].weight: the i-th kept row), a node row, the node list, or
   * the top of the form when no visible field matches.
   */
  showErrors(errors, kept) {
    const byField = new Map();
    const slots = new Map();
    const general = [];
    for (const e of errors) {
      let f = null;
      let slot = null;
      const m = e.field ? /^nodes\[(\d+)\](?:\.(\w+))?$/.exec(e.field) : null;
      if (m) {
        const r = kept[Number(m[1])];
        const key = m[2] === 'address' ? 'ip' : m[2];
        if (r && key && r.fields[key]) f = r.fields[key];
        else slot = r ? r.error : this.nodesError;
      } else if (e.field === 'nodes') {
        slot = this.nodesError;
      } else if (e.field && this.fields[e.field]?.visible) {
        f = this.fields[e.field];
      }
      if (f) byField.set(f, [...(byField.get(f) ?? []), e.reason]);
      else if (slot) slots.set(slot, [...(slots.get(slot) ?? []), e.reason]);
      else general.push(e.field ? `${e.field}: ${e.reason}` : e.reason);
    }
    for (const [f, reasons] of byField) f.setError(reasons);
    for (const [el, reasons] of slots) {
      el.textContent = reasons.join(' ');
      el.hidden = false;
    }
    replace(this.general, general.length > 1 ? h('ul', null, general.map((g) => h('li', null, g))) : general);
    this.general.hidden = general.length === 0;
    const first = [...byField.keys()][0];
    if (general.length || !first) {
      const target = general.length ? this.general : [...slots.keys()][0];
      target?.setAttribute('tabindex', '-1');
      target?.focus();
    } else {
      first.input.focus();
    }
  }

  async save() {
    if (this.saving) return;
    this.clearErrors();
    const {body, kept, missing} = this.requestBody();
    if (missing.length) {
      this.showErrors(missing, kept);
      return;
    }
    this.saving = true;
    this.saveBtn.disabled = true;
    this.saveBtn.setAttribute('aria-busy', 'true');
    const base = `/nodebalancers/${this.nb.id}/configs`;
    try {
      const oldKey = this.key;
      let cfg;
      try {
        cfg = this.cfg
          ? await post(`${base}/${this.cfg.id}/rebuild`, body)
          : await post(base, body);
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        this.showErrors(e.errors, kept);
        toast('Not saved: fix the fields marked in red.', 'error');
        return;
      }
      // Saved: whatever happens to the follow-up read, the user must not read "not saved".
      let nodes = null;
      let nodesErr = null;
      try {
        nodes = await all(`${base}/${cfg.id}/nodes`);
      } catch (e) {
        nodesErr = e;
      }
      const wasNew = !this.cfg;
      this.cfg = cfg;
      this.key = cfg.id;
      this.el.dataset.configId = cfg.id;
      delete this.el.dataset.new;
      if (wasNew) {
        this.saveBtn.textContent = 'Save';
        const del = h('button', {type: 'button', class: 'btn danger-text', onclick: () => this.remove()}, 'Delete configuration');
        this.form.querySelector('.actions .btn:not(.primary)').replaceWith(del);
      }
      if (nodes) {
        this.load(cfg, nodes);
        toast(`Port ${cfg.port} saved: ${nodes.length} backend ${nodes.length === 1 ? 'node' : 'nodes'}.`);
      } else {
        // What is shown is what was sent; the next status poll reloads it from the API.
        this.shown = cfg;
        this.stale = true;
        this.loadedAt = performance.now();
        for (const r of this.rows.filter((x) => x.removed)) {
          this.rows.splice(this.rows.indexOf(r), 1);
          r.el.remove();
        }
        for (const r of this.rows) {
          if (r.id) r.saved = this.rowValues(r);
          this.renderRow(r);
          if (!r.id) this.setStatus(r, null);
        }
        this.baseline = this.snapshot();
        this.renderHead();
        this.changed();
        toast(`Port ${cfg.port} saved, but the node list could not be refreshed (${nodesErr.message}). It refreshes on its own in a few seconds.`, 'warn');
      }
      if (wasNew) this.ctx.saved(this, oldKey);
    } finally {
      this.saving = false;
      this.saveBtn.disabled = false;
      this.saveBtn.removeAttribute('aria-busy');
    }
  }

  async remove() {
    const ok = await confirmDialog({
      title: `Delete the configuration for port ${this.cfg.port}?`,
      body: `Port ${this.cfg.port} stops listening and its ${this.rows.length} backend ${this.rows.length === 1 ? 'node is' : 'nodes are'} removed from this NodeBalancer. The backend servers themselves are not touched.`,
      confirm: 'Delete configuration', danger: true,
    });
    if (!ok) return;
    try {
      await del(`/nodebalancers/${this.nb.id}/configs/${this.cfg.id}`);
      toast(`Configuration for port ${this.cfg.port} deleted.`);
      this.cfg = null;
      this.baseline = this.snapshot();
      this.ctx.removed(this);
    } catch (e) {
      toast(`Could not delete: ${e.message}`, 'error');
    }
  }

  async discard() {
    if (this.snapshot() !== this.baseline) {
      const ok = await confirmDialog({title: 'Discard this new configuration?', body: 'What you entered is lost.', confirm: 'Discard', danger: true});
      if (!ok) return;
    }
    this.baseline = this.snapshot();
    this.cfg = null;
    this.ctx.removed(this);
  }
}

/** nodeValues are a node's fields as the row edits them. */
function nodeValues(n) {
  const {ip, port} = splitAddress(n.address);
  return {label: n.label, ip, port, weight: n.weight, mode: n.mode};
}
