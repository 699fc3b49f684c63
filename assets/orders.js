// /orders: the signed-in customer's orders, newest first (GET /v1/orders).
'use strict';

document.addEventListener('DOMContentLoaded', () => {
  const { api, problem, el, $, say, show, money, when, statusLabel, shortId, session, loginUrl } = Ordo;
  if (!session()) {
    location.replace(loginUrl());
    return;
  }
  let cursor = null;
  const list = $('order-list');

  async function load() {
    const q = new URLSearchParams({ limit: '20' });
    if (cursor) q.set('cursor', cursor);
    const r = await api('GET', '/v1/orders?' + q);
    if (!r.ok) {
      say($('orders-message'), problem(r), 'error');
      return;
    }
    for (const o of r.body.data) {
      const count = o.items.reduce((n, l) => n + l.quantity, 0);
      list.append(el('li', { class: 'order-card', 'data-testid': 'my-order', 'data-order-id': o.id },
        el('a', { href: '/orders/' + o.id },
          el('span', { class: 'mono', text: '#' + shortId(o.id) }),
          el('span', { class: 'badge s-' + o.status, text: statusLabel(o.status) }),
          el('span', { text: when(o.created_at) }),
          el('span', { text: count + (count === 1 ? ' item' : ' items') }),
          el('span', { class: 'num', text: money(o.total_amount, o.currency) }))));
    }
    cursor = r.body.next_cursor;
    show($('orders-more'), !!cursor);
    show($('orders-empty'), list.children.length === 0);
  }

  $('orders-more').addEventListener('click', load);
  load();
});
