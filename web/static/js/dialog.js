// Modal dialogs on the native <dialog> element: focus is trapped and restored, Escape
// cancels, and the browser does the accessibility work.

import {h, id} from './dom.js';

/**
 * confirmDialog asks a yes/no question; resolves true only when the user chose the
 * confirming button.
 */
export function confirmDialog({title, body, confirm = 'Confirm', cancel = 'Cancel', danger = false}) {
  return new Promise((resolve) => {
    const titleId = id('dlg-title');
    const bodyId = id('dlg-body');
    const yes = h('button', {type: 'submit', value: 'yes', class: danger ? 'btn danger' : 'btn primary'}, confirm);
    const dlg = h('dialog', {'aria-labelledby': titleId, 'aria-describedby': bodyId, class: 'modal'},
      h('form', {method: 'dialog'},
        h('h2', {id: titleId}, title),
        h('div', {id: bodyId, class: 'modal-body'}, body),
        h('div', {class: 'actions'},
          h('button', {type: 'submit', value: 'no', class: 'btn'}, cancel),
          yes)));
    dlg.addEventListener('close', () => {
      resolve(dlg.returnValue === 'yes');
      dlg.remove();
    });
    document.body.append(dlg);
    dlg.showModal();
    (danger ? dlg.querySelector('button[value=no]') : yes).focus();
  });
}

/**
 * formDialog shows a form in a modal. submit(form, dialog) runs on submit; when it
 * resolves true the dialog closes. Resolves with what the last submit resolved.
 */
export function formDialog({title, fields, submitLabel = 'Save', submit}) {
  return new Promise((resolve) => {
    const titleId = id('dlg-title');
    let result = false;
    const status = h('div', {class: 'form-error', role: 'alert', hidden: true});
    const ok = h('button', {type: 'submit', class: 'btn primary'}, submitLabel);
    const form = h('form', {novalidate: true},
      h('h2', {id: titleId}, title),
      status,
      h('div', {class: 'modal-body'}, fields),
      h('div', {class: 'actions'},
        h('button', {type: 'button', class: 'btn', onclick: () => dlg.close()}, 'Cancel'),
        ok));
    const dlg = h('dialog', {'aria-labelledby': titleId, class: 'modal'}, form);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      ok.disabled = true;
      ok.setAttribute('aria-busy', 'true');
      try {
        const r = await submit(form, status);
        if (r) {
          result = r;
          dlg.close();
        }
      } finally {
        ok.disabled = false;
        ok.removeAttribute('aria-busy');
      }
    });
    dlg.addEventListener('close', () => {
      resolve(result);
      dlg.remove();
    });
    document.body.append(dlg);
    dlg.showModal();
    form.querySelector('input, select, textarea')?.focus();
  });
}
