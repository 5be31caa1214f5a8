// Sign in: the console asks for an API token, checks it with one API call, and keeps
// it in sessionStorage (this tab only) until "Sign out".

import {h} from '../dom.js';
import {get, session, ApiError} from '../api.js';
import {Field} from '../fields.js';

export function mount(root, _params, {router}) {
  document.title = 'Sign in · nodebalancer';
  const token = new Field({
    name: 'token', label: 'API token', type: 'text', autocomplete: 'current-password',
    help: 'A personal access token with the nodebalancers scope: the bootstrap token ' +
      '(NODEBALANCER_BOOTSTRAP_TOKEN, or <data>/bootstrap-token) or one made at /v4/profile/tokens.',
  }, '');
  token.input.type = 'password';
  token.input.required = true;
  const notice = sessionStorage.getItem('nodebalancer.notice');
  sessionStorage.removeItem('nodebalancer.notice');
  const submit = h('button', {type: 'submit', class: 'btn primary wide'}, 'Sign in');
  const form = h('form', {class: 'card login', novalidate: true, 'aria-labelledby': 'login-title'},
    h('h1', {id: 'login-title'}, 'Sign in to nodebalancer'),
    notice ? h('p', {class: 'notice', role: 'alert'}, notice) : null,
    token.el,
    submit);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const secret = token.input.value.trim();
    token.setError([]);
    if (!secret) {
      token.setError('Enter your API token.');
      token.input.focus();
      return;
    }
    submit.disabled = true;
    try {
      await get('/nodebalancers?page_size=25', {token: secret});
      session.signIn(secret);
      const next = sessionStorage.getItem('nodebalancer.next');
      sessionStorage.removeItem('nodebalancer.next');
      router.go(next && next !== '/login' ? next : '/nodebalancers', {replace: true});
    } catch (err) {
      const reason = err instanceof ApiError ? err.errors.map((x) => x.reason).join(' ') : String(err);
      token.setError(reason);
      token.input.focus();
    } finally {
      submit.disabled = false;
    }
  });
  root.append(h('section', {class: 'page narrow'}, form));
  return {unmount() {}};
}
