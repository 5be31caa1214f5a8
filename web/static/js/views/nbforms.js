// The NodeBalancer create and settings forms, and delete with confirmation: shared by
// the list and the NodeBalancer page.

import {h, toast} from '../dom.js';
import {post, del, ApiError} from '../api.js';
import {Field, showErrors} from '../fields.js';
import {confirmDialog, formDialog} from '../dialog.js';

/** nbFields builds the label/throttle/tags (and, on create, region) fields. */
export function nbFields(nb, {create = false, regions = []} = {}) {
  const f = {
    label: new Field({name: 'label', label: 'Label', type: 'text', placeholder: 'my-nodebalancer',
      help: '3–32 letters, digits, - and _. Left empty on create, one is made up.'}, nb.label),
  };
  if (create) {
    f.region = new Field({name: 'region', label: 'Region', type: 'text', list: 'nb-regions',
      placeholder: 'the server’s region', help: 'Required: the region this server serves.'},
    nb.region ?? regions[0] ?? '');
    f.region.el.append(h('datalist', {id: 'nb-regions'}, regions.map((r) => h('option', {value: r}))));
  }
  f.client_conn_throttle = new Field({name: 'client_conn_throttle', label: 'Client Connection Throttle',
    type: 'number', min: 0, max: 20,
    help: 'New connections per second allowed from one client address, 0–20; 0 turns it off.'},
  nb.client_conn_throttle ?? 0);
  f.client_udp_sess_throttle = new Field({name: 'client_udp_sess_throttle', label: 'Client UDP Session Throttle',
    type: 'number', min: 0, max: 20,
    help: 'New UDP sessions per second allowed from one client address, 0–20; 0 turns it off.'},
  nb.client_udp_sess_throttle ?? 0);
  f.tags = new Field({name: 'tags', label: 'Tags', type: 'tags', placeholder: 'web, production',
    help: 'Comma separated, 3–50 characters each.'}, nb.tags ?? []);
  return f;
}

/** nbBody is the request body of the fields (empty label and region left out: the API
 * makes up a label and refuses a missing region by name). */
export function nbBody(f) {
  const body = {client_conn_throttle: f.client_conn_throttle.get(),
    client_udp_sess_throttle: f.client_udp_sess_throttle.get(), tags: f.tags.get()};
  const label = f.label.get().trim();
  if (label) body.label = label;
  if (f.region && f.region.get().trim()) body.region = f.region.get().trim();
  if (body.client_conn_throttle === null) delete body.client_conn_throttle;
  if (body.client_udp_sess_throttle === null) delete body.client_udp_sess_throttle;
  return body;
}

/** fieldFor maps an API error field ("tags[2]" too) to one of the fields. */
export function nbFieldFor(f) {
  return (name) => f[name.replace(/\[\d+\]$/, '')] ?? null;
}

/** createNodeBalancer asks for the fields in a dialog; resolves to the new one or null. */
export async function createNodeBalancer(regions) {
  const f = nbFields({}, {create: true, regions});
  const r = await formDialog({
    title: 'Create NodeBalancer',
    submitLabel: 'Create NodeBalancer',
    fields: [f.label.el, f.region.el, f.client_conn_throttle.el, f.client_udp_sess_throttle.el, f.tags.el],
    async submit(_form, general) {
      Object.values(f).forEach((x) => x.setError([]));
      general.hidden = true;
      try {
        return await post('/nodebalancers', nbBody(f));
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        showErrors(e.errors, nbFieldFor(f), general);
        return false;
      }
    },
  });
  return r || null;
}

/** deleteNodeBalancer confirms, then deletes; resolves true when it is gone. */
export async function deleteNodeBalancer(nb) {
  const ok = await confirmDialog({
    title: `Delete ${nb.label}?`,
    body: [
      h('p', null, `NodeBalancer ${nb.label} (${nb.ipv4}) and all its configurations and backend nodes will be deleted, and its ports stop listening.`),
      h('p', null, 'Your backend servers themselves are not touched. This cannot be undone.'),
    ],
    confirm: 'Delete NodeBalancer', danger: true,
  });
  if (!ok) return false;
  try {
    await del(`/nodebalancers/${nb.id}`);
    toast(`NodeBalancer ${nb.label} deleted.`);
    return true;
  } catch (e) {
    toast(`Could not delete ${nb.label}: ${e.message}`, 'error');
    return false;
  }
}
