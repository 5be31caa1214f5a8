// The console's entry point: routes, the session and the top bar.

import {Router} from './router.js';
import {session, setUnauthorizedHandler} from './api.js';
import {confirmDialog} from './dialog.js';

const nbRoute = (tab) => ({
  pattern: tab === 'configurations'
    ? /^\/nodebalancers\/(?<id>\d+)\/configurations(?:\/(?<configId>\d+|new))?\/?$/
    : new RegExp(`^/nodebalancers/(?<id>\\d+)/${tab}/?$`),
  key: (p) => `nb:${p.id}:${tab}`,
  load: () => import('./views/nodebalancer.js'),
  auth: true,
});

const routes = [
  {pattern: /^\/login\/?$/, key: () => 'login', load: () => import('./views/login.js')},
  {pattern: /^\/nodebalancers\/?$/, key: () => 'list', load: () => import('./views/list.js'), auth: true},
  nbRoute('summary'),
  nbRoute('configurations'),
  nbRoute('settings'),
];

const main = document.getElementById('main');
const signOut = document.getElementById('sign-out');
const nav = document.getElementById('nav');

function syncChrome() {
  const inSession = !!session.token;
  signOut.hidden = !inSession;
  nav.hidden = !inSession;
  const link = document.getElementById('nav-nodebalancers');
  if (location.pathname === '/nodebalancers') link.setAttribute('aria-current', 'page');
  else link.removeAttribute('aria-current');
}

const router = new Router(main, routes, {
  notFound: () => import('./views/notfound.js'),
  afterEach: syncChrome,
  beforeEach(path) {
    if (path === '/' || /^\/nodebalancers\/\d+\/?$/.test(path)) {
      return path === '/' ? '/nodebalancers' : `${path.replace(/\/$/, '')}/summary`;
    }
    if (path !== '/login' && !session.token) {
      sessionStorage.setItem('nodebalancer.next', path);
      return '/login';
    }
    if (path === '/login' && session.token) return '/nodebalancers';
    return path;
  },
});

// A refused token (revoked, expired) ends the session: back to the sign-in form.
setUnauthorizedHandler(() => {
  if (!session.token) return;
  session.signOut();
  sessionStorage.setItem('nodebalancer.notice', 'Your token was refused (Invalid Token). Sign in again.');
  sessionStorage.setItem('nodebalancer.next', location.pathname);
  router.go('/login', {force: true, replace: true});
});

signOut.addEventListener('click', async () => {
  if (router.isDirty()) {
    const ok = await confirmDialog({
      title: 'Sign out without saving?', body: 'You have unsaved changes on this page. Signing out discards them.',
      confirm: 'Sign out', cancel: 'Stay', danger: true,
    });
    if (!ok) return;
  }
  session.signOut();
  sessionStorage.removeItem('nodebalancer.next');
  await router.go('/login', {force: true});
});

router.go(location.pathname + location.search, {replace: true});
