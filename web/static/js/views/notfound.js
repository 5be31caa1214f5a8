// The page for a console path that does not exist.

import {h} from '../dom.js';

export function mount(root) {
  document.title = 'Not found · nodebalancer';
  root.append(h('section', {class: 'page narrow'},
    h('h1', null, 'Page not found'),
    h('p', null, 'There is nothing at this address. ', h('a', {href: '/nodebalancers'}, 'Go to your NodeBalancers'), '.')));
  return {unmount() {}};
}
