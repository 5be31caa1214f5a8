// Form fields: every input has a label, a help text and an error slot that the
// API's validation reasons fill, tied together with aria-describedby.

import {h, id} from './dom.js';
import REGISTRY from './choices.js';

/** Field is one labelled input with its error slot. */
export class Field {
  /**
   * def: {name, label, type: text|number|select|checkbox|textarea|tags, options:
   * [[value, text]], optionAllowed(value, values), min, max, help, placeholder,
   * autocomplete, hideLabel, readonly}
   */
  constructor(def, value) {
    this.def = def;
    const inputId = id(`f-${def.name}`);
    const errId = id('err');
    const helpId = def.help ? id('help') : null;
    this.errorEl = h('p', {class: 'field-error', id: errId, hidden: true});
    const described = [helpId, errId].filter(Boolean).join(' ');
    const common = {id: inputId, name: def.name, 'aria-describedby': described};
    switch (def.type) {
      case 'select':
        this.input = h('select', common, def.options.map(([v, t]) => h('option', {value: v}, t)));
        break;
      case 'checkbox':
        this.input = h('input', {...common, type: 'checkbox'});
        break;
      case 'textarea':
        this.input = h('textarea', {...common, rows: def.rows ?? 4, placeholder: def.placeholder, spellcheck: 'false'});
        break;
      default:
        this.input = h('input', {
          ...common,
          type: def.type === 'number' ? 'number' : 'text',
          inputmode: def.type === 'number' ? 'numeric' : null,
          min: def.min, max: def.max, step: def.type === 'number' ? 1 : null,
          placeholder: def.placeholder, autocomplete: def.autocomplete ?? 'off',
          spellcheck: 'false', list: def.list,
        });
    }
    if (def.readonly) this.input.readOnly = true;
    const label = h('label', {for: inputId, class: def.hideLabel ? 'label-text narrow-only' : 'label-text'}, def.label);
    const help = def.help ? h('p', {class: 'field-help', id: helpId}, def.help) : null;
    this.el = def.type === 'checkbox'
      ? h('div', {class: `field check field-${def.name}`}, h('div', {class: 'check-row'}, this.input, label), help, this.errorEl)
      : h('div', {class: `field field-${def.name}`}, label, this.input, help, this.errorEl);
    this.set(value);
  }

  /** get returns the value in the API's type (numbers as numbers, '' kept). */
  get() {
    const i = this.input;
    switch (this.def.type) {
      case 'checkbox': return i.checked;
      case 'number': return i.value.trim() === '' ? null : Number(i.value);
      case 'tags': return i.value.split(',').map((s) => s.trim()).filter(Boolean);
      default: return i.value;
    }
  }

  /** set shows v. */
  set(v) {
    const i = this.input;
    if (this.def.type === 'checkbox') i.checked = !!v;
    else if (this.def.type === 'tags') i.value = (v ?? []).join(', ');
    else i.value = v ?? '';
  }

  /** setError shows reasons next to the input ([] or '' clears them). */
  setError(reasons) {
    const list = [].concat(reasons ?? []).filter(Boolean);
    this.errorEl.textContent = list.join(' ');
    this.errorEl.hidden = list.length === 0;
    if (list.length) this.input.setAttribute('aria-invalid', 'true');
    else this.input.removeAttribute('aria-invalid');
    this.el.classList.toggle('invalid', list.length > 0);
  }

  /** setChanged marks the field as edited but not saved. */
  setChanged(changed) { this.el.classList.toggle('changed', changed); }

  /**
   * limitOptions offers only the options allowed(value) accepts (a select's others
   * are hidden and disabled); a current value no longer allowed becomes the first
   * allowed one.
   */
  limitOptions(allowed) {
    let first = null;
    for (const o of this.input.options) {
      const ok = allowed(o.value);
      o.hidden = !ok;
      o.disabled = !ok;
      if (ok && first === null) first = o.value;
    }
    if (!allowed(this.input.value) && first !== null) this.input.value = first;
  }

  /** show hides or shows the field (a hidden field is neither seen nor sent). */
  show(visible) { this.el.hidden = !visible; }

  get visible() { return !this.el.hidden; }
}

/**
 * showErrors puts each API error next to its field: fieldFor(name) returns the Field
 * (or null); reasons with no visible field are listed in `general` (an element), so
 * no reason is ever lost. Focuses the first invalid input, or `general`.
 * Returns how many errors were placed.
 */
export function showErrors(errors, fieldFor, general) {
  const byField = new Map();
  const rest = [];
  for (const e of errors) {
    const f = e.field ? fieldFor(e.field) : null;
    if (f && f.visible) {
      if (!byField.has(f)) byField.set(f, []);
      byField.get(f).push(e.reason);
    } else {
      rest.push(e.field ? `${e.field}: ${e.reason}` : e.reason);
    }
  }
  for (const [f, reasons] of byField) f.setError(reasons);
  if (general) {
    general.replaceChildren(...(rest.length > 1
      ? [h('ul', null, rest.map((r) => h('li', null, r)))]
      : rest.map((r) => h('span', null, r))));
    general.hidden = rest.length === 0;
  }
  const first = [...byField.keys()][0];
  if (rest.length && general) {
    general.setAttribute('tabindex', '-1');
    general.focus();
  } else if (first) {
    first.input.focus();
  }
  return errors.length;
}

/** pairs turns the server's options into [value, label] pairs. */
const pairs = (options) => options.map((o) => [o.value, o.label]);

/**
 * Labels of choice values, as Cloud Manager spells them. Algorithms, check types
 * and stickiness kinds come from the server's registry (REGISTRY, /js/choices.js).
 */
export const CHOICES = {
  protocol: [['http', 'HTTP'], ['https', 'HTTPS'], ['tcp', 'TCP'], ['udp', 'UDP']],
  algorithm: pairs(REGISTRY.algorithm),
  stickiness: pairs(REGISTRY.stickiness),
  check: pairs(REGISTRY.check),
  proxy_protocol: [['none', 'None'], ['v1', 'v1'], ['v2', 'v2']],
  cipher_suite: [['recommended', 'Recommended'], ['legacy', 'Legacy']],
  mode: [['accept', 'Accept'], ['reject', 'Reject'], ['drain', 'Drain'], ['backup', 'Backup']],
};

/** CONFIG_DEFAULTS are the API's defaults for a new configuration. */
export const CONFIG_DEFAULTS = {
  port: 80, protocol: 'http', algorithm: 'roundrobin', stickiness: 'none', check: 'none',
  check_interval: 31, check_timeout: 30, check_attempts: 3, check_path: '', check_body: '',
  check_passive: true, proxy_protocol: 'none', cipher_suite: 'recommended', udp_check_port: 80,
  udp_session_timeout: 2,
};

/** allowedBy says whether a value of options is available with the config's protocol. */
const allowedBy = (options) => (v, c) => {
  const o = options.find((x) => x.value === v);
  return !o || !o.protocols || o.protocols.includes(c.protocol);
};
/** checkUses says whether the config's check type uses a check field (uses_path, uses_body). */
const checkUses = (c, what) => !!REGISTRY.check.find((x) => x.value === c.check)?.[what];

/**
 * CONFIG_GROUPS are the configuration fields of linode-api.md in Cloud Manager's
 * order; `when` says for which settings a field applies (others are hidden).
 */
export const CONFIG_GROUPS = [
  {title: 'Port and protocol', fields: [
    {name: 'port', label: 'Port', type: 'number', min: 1, max: 65535,
      help: 'The inbound port this configuration listens on, 1–65535, unique on this NodeBalancer.'},
    {name: 'protocol', label: 'Protocol', type: 'select', options: CHOICES.protocol,
      help: 'HTTPS terminates TLS with the certificate below; TCP passes bytes through; UDP forwards datagrams in sessions (client address and port).'},
    {name: 'udp_session_timeout', label: 'Session Timeout (seconds)', type: 'number', readonly: true,
      when: (c) => c.protocol === 'udp',
      help: 'Read-only: a UDP session ends after this many seconds without a datagram either way.'},
    {name: 'proxy_protocol', label: 'Proxy Protocol', type: 'select', options: CHOICES.proxy_protocol,
      when: (c) => c.protocol === 'tcp',
      help: 'Send the client address to the nodes in a PROXY protocol header (TCP only).'},
    {name: 'cipher_suite', label: 'Cipher Suite', type: 'select', options: CHOICES.cipher_suite,
      when: (c) => c.protocol === 'https', help: 'Legacy also allows older TLS clients.'},
    {name: 'ssl_cert', label: 'SSL Certificate', type: 'textarea', rows: 4,
      placeholder: '-----BEGIN CERTIFICATE-----', when: (c) => c.protocol === 'https',
      help: 'PEM. Required for HTTPS; the API never shows it back.'},
    {name: 'ssl_key', label: 'Private Key', type: 'textarea', rows: 4,
      placeholder: '-----BEGIN PRIVATE KEY-----', when: (c) => c.protocol === 'https',
      help: 'PEM, matching the certificate.'},
  ]},
  {title: 'Algorithm and session stickiness', fields: [
    {name: 'algorithm', label: 'Algorithm', type: 'select', options: CHOICES.algorithm, optionAllowed: allowedBy(REGISTRY.algorithm),
      help: 'How a node is chosen for each new client (each new session over UDP). Source is not for UDP; Ring Hash is UDP only.'},
    {name: 'stickiness', label: 'Session Stickiness', type: 'select', options: CHOICES.stickiness, optionAllowed: allowedBy(REGISTRY.stickiness),
      help: 'Keep a client on the same node: Table by client address, HTTP Cookie with a cookie (HTTP and HTTPS only); for UDP, Session by address and port, Source IP by address.'},
  ]},
  {title: 'Active health checks', fields: [
    {name: 'check', label: 'Type', type: 'select', options: CHOICES.check, optionAllowed: allowedBy(REGISTRY.check),
      help: 'TCP Connection opens a connection; HTTP Status wants a 2xx or 3xx answer; HTTP Body also matches the body.'},
    {name: 'udp_check_port', label: 'UDP Check Port', type: 'number', min: 1, max: 65535,
      when: (c) => c.protocol === 'udp' && c.check !== 'none',
      help: 'UDP configurations check each node over TCP at its address and this port, 1–65535.'},
    {name: 'check_interval', label: 'Interval (seconds)', type: 'number', min: 2, max: 3600,
      when: (c) => c.check !== 'none', help: 'Seconds between checks; more than the timeout.'},
    {name: 'check_timeout', label: 'Timeout (seconds)', type: 'number', min: 1, max: 30,
      when: (c) => c.check !== 'none', help: 'Seconds to wait for an answer, 1–30.'},
    {name: 'check_attempts', label: 'Attempts', type: 'number', min: 1, max: 30,
      when: (c) => c.check !== 'none', help: 'Failed checks in a row that take a node DOWN, 1–30.'},
    {name: 'check_path', label: 'Check HTTP Path', type: 'text', placeholder: '/health',
      when: (c) => checkUses(c, 'uses_path'),
      help: 'The path requested from each node, e.g. /health.'},
    {name: 'check_body', label: 'Expected HTTP Body', type: 'text', placeholder: 'ok',
      when: (c) => checkUses(c, 'uses_body'), help: 'A regular expression the response body must match.'},
  ]},
  {title: 'Passive checks', fields: [
    {name: 'check_passive', label: 'Passive checks', type: 'checkbox',
      help: 'Take a node DOWN when live traffic to it fails (a connection error, or a 5xx answer over HTTP).'},
  ]},
];

/** NODE_FIELDS are a backend node's editable fields, as the Backend Nodes row shows them. */
export const NODE_FIELDS = [
  {name: 'label', label: 'Label', type: 'text', placeholder: 'web-1', hideLabel: true},
  {name: 'ip', label: 'IP Address', type: 'text', placeholder: '192.168.1.10', hideLabel: true},
  {name: 'port', label: 'Port', type: 'number', min: 1, max: 65535, placeholder: '80', hideLabel: true},
  {name: 'weight', label: 'Weight', type: 'number', min: 1, max: 255, hideLabel: true},
  {name: 'mode', label: 'Mode', type: 'select', options: CHOICES.mode, hideLabel: true},
];

/** splitAddress turns "ip:port" or "[v6]:port" into {ip, port}. */
export function splitAddress(addr) {
  const s = String(addr ?? '');
  const i = s.lastIndexOf(':');
  if (i < 0) return {ip: s, port: null};
  let ip = s.slice(0, i);
  if (ip.startsWith('[') && ip.endsWith(']')) ip = ip.slice(1, -1);
  const port = Number(s.slice(i + 1));
  return {ip, port: Number.isInteger(port) && s.slice(i + 1) !== '' ? port : null};
}

/** joinAddress is splitAddress's inverse; IPv6 addresses get brackets. */
export function joinAddress(ip, port) {
  const host = String(ip ?? '').trim();
  const p = port == null ? '' : String(port);
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${p}` : `${host}:${p}`;
}
