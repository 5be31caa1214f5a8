// Client-side routing on the History API. A view is mounted for each route; moving
// to another route asks first when the current view has unsaved changes.

import {confirmDialog} from './dialog.js';

/**
 * A view module exports mount(root, params, ctx) returning
 * {unmount(), isDirty?(), update?(params)}; update, when present, takes a route
 * change that keeps the same view key (for example opening another port's panel).
 */
export class Router {
  constructor(root, routes, {notFound, beforeEach, afterEach}) {
    this.root = root;
    this.routes = routes; // [{pattern: RegExp, key(params), load: () => import(...), auth}]
    this.notFound = notFound;
    this.beforeEach = beforeEach;
    this.afterEach = afterEach ?? (() => {});
    this.current = null; // {key, view, url}
    this.seq = 0;
    window.addEventListener('popstate', () => this.go(location.pathname + location.search, {pop: true}));
    document.addEventListener('click', (e) => this.onClick(e));
    window.addEventListener('beforeunload', (e) => {
      if (this.isDirty()) {
        e.preventDefault();
        e.returnValue = '';
      }
    });
  }

  isDirty() { return !!this.current?.view?.isDirty?.(); }

  onClick(e) {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const a = e.target.closest?.('a[href]');
    if (!a || a.target || a.hasAttribute('download')) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || url.pathname.startsWith('/v4')) return;
    if (url.hash && url.pathname === location.pathname) return;
    e.preventDefault();
    this.go(url.pathname + url.search);
  }

  match(path) {
    for (const r of this.routes) {
      const m = r.pattern.exec(path);
      if (m) return {route: r, params: m.groups ?? {}};
    }
    return null;
  }

  /**
   * go shows the view of url. pop: the browser already moved (back/forward);
   * replace: no new history entry; force: skip the unsaved-changes question.
   */
  async go(url, {pop = false, replace = false, force = false} = {}) {
    const seq = ++this.seq;
    const path = new URL(url, location.href).pathname;
    const redirect = this.beforeEach?.(path);
    if (redirect && redirect !== path) return this.go(redirect, {replace: true, force});
    const found = this.match(path);
    const key = found ? found.route.key(found.params) : 'not-found';
    const prev = this.current;
    if (prev && prev.key === key && prev.view.update) {
      this.setUrl(url, pop, replace);
      prev.url = url;
      prev.view.update(found.params);
      this.afterEach();
      return;
    }
    if (!force && prev && this.isDirty()) {
      const leave = await confirmDialog({
        title: 'Leave without saving?',
        body: 'You have unsaved changes on this page. If you leave, they are lost.',
        confirm: 'Leave page', cancel: 'Stay', danger: true,
      });
      if (!leave) {
        if (pop) history.pushState(null, '', prev.url);
        this.afterEach();
        return;
      }
    }
    if (seq !== this.seq) return;
    this.setUrl(url, pop, replace);
    const mod = found ? await found.route.load() : await this.notFound();
    if (seq !== this.seq) return;
    prev?.view?.unmount?.();
    this.root.replaceChildren();
    const view = mod.mount(this.root, found?.params ?? {}, {router: this});
    this.current = {key, view, url};
    const h1 = this.root.querySelector('h1');
    if (h1) {
      h1.setAttribute('tabindex', '-1');
      if (!this.root.contains(document.activeElement) || document.activeElement === this.root) h1.focus({preventScroll: true});
    }
    window.scrollTo(0, 0);
    this.afterEach();
  }

  setUrl(url, pop, replace) {
    if (pop) return;
    if (replace) history.replaceState(null, '', url);
    else if (location.pathname + location.search !== url) history.pushState(null, '', url);
  }
}
