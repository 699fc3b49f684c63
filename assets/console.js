// /admin/orders: the staff console's list. The filter is the page's URL (?status=…&q=…),
// so a view can be bookmarked; the rows come from GET /v1/orders with the same filter,
// newest first, a page at a time. The list is live: it follows /v1/events (staff see every
// order), and each event's order is read again and placed, moved or removed as the active
// filter says. The stream is opened before the first page is read, so nothing that happens
// in between is missed; after a dropped connection it resumes after the last event.
'use strict';

document.addEventListener('DOMContentLoaded', () => {
  const { api, problem, el, $, say, show, money, when, statusLabel, shortId, session, loginUrl } = Ordo;
  const params = new URLSearchParams(location.search);
  const statuses = params.getAll('status').filter(Boolean);
  const q = (params.get('q') || '').trim();
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  const rows = $('order-rows');
  let cursor = null;
  let loaded = false;
  let queue = Promise.resolve();
  const pending = []; // events that came before the first page

  const s = session();
  if (!s) {
    location.replace(loginUrl());
    return;
  }

  function row(o) {
    const count = o.items.reduce((n, l) => n + l.quantity, 0);
    return el('tr', { 'data-testid': 'order-row', 'data-order-id': o.id, 'data-status': o.status, 'data-created': o.created_at },
      el('td', {}, el('a', { href: '/admin/orders/' + o.id, class: 'mono', title: o.id, text: '#' + shortId(o.id) })),
      el('td', { text: when(o.created_at) }),
      el('td', { class: 'mono', title: o.customer_id, text: shortId(o.customer_id) }),
      el('td', {}, el('span', { class: 'badge s-' + o.status, 'data-testid': 'row-status', text: statusLabel(o.status) })),
      el('td', { text: o.payment_status }),
      el('td', { class: 'num', text: money(o.total_amount, o.currency) + ' · ' + count + (count === 1 ? ' item' : ' items') }));
  }

  function refreshEmpty() {
    const any = rows.children.length > 0;
    show($('console-table'), any);
    show($('console-empty'), !any);
  }

  function listQuery() {
    const p = new URLSearchParams();
    for (const st of statuses) p.append('status', st);
    if (q) p.set('q', q);
    p.set('limit', '50');
    return p;
  }

  async function loadPage() {
    const p = listQuery();
    if (cursor) p.set('cursor', cursor);
    const r = await api('GET', '/v1/orders?' + p);
    if (!r.ok) {
      say($('console-message'), problem(r), 'error');
      return false;
    }
    for (const o of r.body.data) {
      const old = rows.querySelector('[data-order-id="' + o.id + '"]');
      if (old) old.replaceWith(row(o));
      else rows.append(row(o));
    }
    cursor = r.body.next_cursor;
    show($('console-more'), !!cursor);
    refreshEmpty();
    return true;
  }

  // Does the order match the active filter? The status is checked here; an e-mail prefix
  // is asked of the API (the order itself does not carry the e-mail).
  async function matches(o) {
    if (statuses.length && !statuses.includes(o.status)) return false;
    if (!q) return true;
    if (UUID.test(q)) return o.id.toLowerCase() === q.toLowerCase();
    const p = new URLSearchParams({ q, customer_id: o.customer_id, limit: '1' });
    const r = await api('GET', '/v1/orders?' + p);
    return r.ok && r.body.data.length > 0;
  }

  // Puts the row where newest-first order wants it; an order older than everything shown
  // while more pages remain will come with those pages instead.
  function place(o) {
    const fresh = row(o);
    fresh.classList.add('fresh');
    const old = rows.querySelector('[data-order-id="' + o.id + '"]');
    if (old) {
      old.replaceWith(fresh);
      return;
    }
    for (const r of rows.children) {
      if (r.dataset.created < o.created_at || (r.dataset.created === o.created_at && r.dataset.orderId < o.id)) {
        r.before(fresh);
        return;
      }
    }
    if (!cursor) rows.append(fresh);
  }

  async function apply(orderId) {
    const r = await api('GET', '/v1/orders/' + orderId);
    const old = rows.querySelector('[data-order-id="' + orderId + '"]');
    if (!r.ok) {
      if (r.status === 404 && old) old.remove();
      return;
    }
    if (await matches(r.body)) place(r.body);
    else if (old) old.remove();
    refreshEmpty();
  }

  function onEvent(ev) {
    const id = ev.data && ev.data.order_id;
    if (!id) return;
    if (!loaded) {
      pending.push(id);
      return;
    }
    queue = queue.then(() => apply(id)).catch(() => {});
  }

  async function start() {
    const me = await api('GET', '/v1/me');
    if (!me.ok || !me.body || (me.body.role !== 'staff' && me.body.role !== 'admin')) {
      // The API decides (the stored role is only a hint for the menu).
      say($('console-message'), me.status === 401 ? 'Please sign in again.' : 'This console is for shop staff only.', 'error');
      $('console-message').dataset.testid = 'forbidden';
      show($('console-table'), false);
      return;
    }
    let first = null;
    const loadFirst = () => first || (first = (async () => {
      if (await loadPage()) {
        loaded = true;
        for (const id of new Set(pending.splice(0))) queue = queue.then(() => apply(id)).catch(() => {});
      }
    })());
    Ordo.follow({
      path: '/v1/events',
      token: () => (session() || {}).token,
      onEvent,
      // The first page is read once the stream is open, so that every change after the
      // read comes through the stream.
      onOpen: async (since) => {
        if (!loaded) await loadFirst();
        else if (!since) {
          // Nothing seen yet to resume from: read the first page again.
          cursor = null;
          await loadPage();
        }
      },
      onAuthError: () => say($('console-message'), 'Live updates stopped: please sign in again.', 'error'),
    });
    // Without a stream (it may be refused for a while), the list still shows.
    setTimeout(loadFirst, 3000);
  }

  $('console-more').addEventListener('click', loadPage);
  $('status-filter').addEventListener('change', (e) => e.target.form.requestSubmit());
  start();
});
