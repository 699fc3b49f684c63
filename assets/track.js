// /orders/{id}: the live tracking page. It reads the order with the signed-in user's token,
// or with the read-only tracking link from a notification (#link=…, moved out of the
// address bar into sessionStorage at once), then follows the order over /v1/events and
// never reloads: a status change or a carrier scan appears as it happens, and after a
// dropped connection the stream resumes after the last event seen.
'use strict';

document.addEventListener('DOMContentLoaded', () => {
  const { api, problem, el, $, say, show, money, when, day, statusLabel, carrierLabel, shortId, session, loginUrl, timelineEntry } = Ordo;
  const orderId = document.body.dataset.orderId;
  const LINK = 'ordo.link.' + orderId;
  const fromHash = location.hash.match(/[#&]link=([A-Za-z0-9_-]+)/);
  if (fromHash) {
    sessionStorage.setItem(LINK, fromHash[1]);
    history.replaceState(null, '', location.pathname + location.search);
  }
  const link = sessionStorage.getItem(LINK);
  let cred = null; // {token, kind: 'session' | 'link'}
  let order = null;
  const events = []; // oldest first
  const seen = new Set();

  const STEPS = [
    ['placed', 'Placed'],
    ['processing', 'Processing'],
    ['shipped', 'Shipped'],
    ['out_for_delivery', 'Out for delivery'],
    ['delivered', 'Delivered'],
  ];

  function fail(text) {
    $('track').removeAttribute('aria-busy');
    show($('track-body'), false);
    say($('track-message'), text, 'error');
  }

  // The user's own session first (it may cancel); the tracking link otherwise.
  async function firstRead() {
    const s = session();
    let last = null;
    if (s) {
      last = await api('GET', '/v1/orders/' + orderId, undefined, s.token);
      if (last.ok) return { cred: { token: s.token, kind: 'session' }, r: last };
    }
    if (link) {
      const r = await api('GET', '/v1/orders/' + orderId, undefined, link);
      if (r.ok) return { cred: { token: link, kind: 'link' }, r };
      if (r.status === 401) sessionStorage.removeItem(LINK);
      return { cred: null, r, linkFailed: true };
    }
    return { cred: null, r: last };
  }

  // The latest carrier scan after the last status change, if any.
  function latestScan() {
    for (let i = events.length - 1; i >= 0; i--) {
      if (events[i].event === 'order_status_update') return null;
      if (events[i].event === 'order_tracking_update') return events[i].data;
    }
    return null;
  }

  // The order's estimate, else the latest one a carrier scan gave.
  function estimate() {
    if (order.estimated_delivery) return order.estimated_delivery;
    for (let i = events.length - 1; i >= 0; i--) {
      if (events[i].data && events[i].data.estimated_delivery) return events[i].data.estimated_delivery;
    }
    return null;
  }

  function renderSteps() {
    const bar = $('steps');
    bar.replaceChildren();
    const scan = latestScan();
    let at = { created: -1, placed: 0, processing: 1, shipped: 2, delivered: 4 }[order.status];
    if (order.status === 'shipped' && scan && scan.carrier_status === 'out_for_delivery') at = 3;
    const canceled = order.status === 'canceled';
    const trouble = !canceled && order.status !== 'delivered' && scan &&
      (scan.carrier_status === 'exception' || scan.carrier_status === 'attempt_failed');
    bar.className = 'steps' + (canceled ? ' canceled' : '');
    STEPS.forEach(([key, label], i) => {
      const state = canceled ? 'todo' : i < at ? 'done' : i === at ? (trouble ? 'problem' : 'current') : 'todo';
      bar.append(el('li', { class: 'step ' + state, 'data-step': key, 'data-state': state, 'aria-current': i === at && !canceled ? 'step' : null },
        el('span', { class: 'bullet', 'aria-hidden': 'true' }), el('span', { class: 'label', text: label })));
    });
    if (canceled) bar.append(el('li', { class: 'step canceled current', 'data-step': 'canceled', 'data-state': 'current', 'aria-current': 'step' },
      el('span', { class: 'bullet', 'aria-hidden': 'true' }), el('span', { class: 'label', text: 'Canceled' })));
    const detail = $('status-detail');
    detail.className = 'status-detail';
    if (canceled) {
      detail.textContent = order.payment_status === 'refunded' ? 'This order was canceled and your payment refunded.'
        : order.payment_status === 'failed' ? 'This order was canceled: the payment did not go through.'
          : 'This order was canceled.';
    } else if (order.status === 'created') {
      detail.textContent = 'Waiting for your payment to be confirmed.';
    } else if (trouble) {
      detail.textContent = carrierLabel(scan.carrier_status) + ': ' + (scan.description || 'the carrier reported a problem') + (scan.location ? ' (' + scan.location + ')' : '');
      detail.className = 'status-detail problem';
    } else if (scan && scan.carrier_status === 'available_for_pickup') {
      detail.textContent = 'Ready for pickup' + (scan.location ? ' at ' + scan.location : '') + '.';
    } else if (order.status === 'delivered') {
      detail.textContent = 'Delivered. Enjoy!';
    } else if (at === 3) {
      detail.textContent = 'Out for delivery today.';
    } else if (scan && scan.description) {
      detail.textContent = 'Latest: ' + scan.description + (scan.location ? ' (' + scan.location + ')' : '');
    } else {
      detail.textContent = '';
    }
  }

  function renderOrder() {
    $('track').removeAttribute('aria-busy');
    say($('track-message'), '');
    show($('track-body'), true);
    document.title = 'Order #' + shortId(order.id) + ' · ' + statusLabel(order.status) + ' · Ordo';
    $('order-ref').textContent = '#' + shortId(order.id);
    $('order-ref').title = order.id;
    const st = $('order-status');
    st.textContent = statusLabel(order.status);
    st.dataset.status = order.status;
    st.className = 'badge big s-' + order.status;
    $('carrier').textContent = order.carrier || '—';
    $('tracking-number').textContent = order.tracking_number || '—';
    const eta = estimate();
    $('estimated-delivery').textContent = order.status === 'delivered' ? 'Delivered' : order.status === 'canceled' ? '—' : eta ? day(eta) : 'Not known yet';
    $('created-at').textContent = when(order.created_at);
    $('order-lines').replaceChildren(...order.items.map((l) => el('tr', { 'data-testid': 'order-line' },
      el('td', {}, el('span', { class: 'line-name', text: l.name }), el('span', { class: 'hint', text: ' × ' + l.quantity })),
      el('td', { class: 'num', text: money(l.line_total, order.currency) }))));
    $('order-total').textContent = money(order.total_amount, order.currency);
    const cancelable = cred.kind === 'session' && ['created', 'placed', 'processing'].includes(order.status);
    show($('cancel-box'), cancelable);
    show($('link-note'), cred.kind === 'link');
    $('link-login').href = loginUrl();
    renderSteps();
  }

  function addEvent(ev, live) {
    if (seen.has(ev.id)) return false;
    seen.add(ev.id);
    events.push(ev);
    const entry = timelineEntry(ev);
    if (live) entry.classList.add('fresh');
    $('timeline').prepend(entry); // newest first
    return true;
  }

  // Re-reads the order after events; overlapping calls collapse into one more read.
  let reading = null;
  let again = false;
  async function refresh() {
    if (reading) {
      again = true;
      return reading;
    }
    reading = (async () => {
      do {
        again = false;
        const r = await api('GET', '/v1/orders/' + orderId, undefined, cred.token);
        if (r.ok) {
          order = r.body;
          renderOrder();
        }
      } while (again);
    })();
    try { await reading; } finally { reading = null; }
  }

  async function start() {
    const first = await firstRead();
    if (!first.cred) {
      const r = first.r;
      if (r && r.status === 404) return fail('Order not found. It may belong to another account.');
      if (first.linkFailed && first.r.status === 401) {
        return fail('This tracking link has expired or is not valid. Sign in to see your order.');
      }
      if (!r || r.status === 401) {
        const a = el('a', { href: loginUrl(), text: 'Sign in' });
        $('track').removeAttribute('aria-busy');
        const m = $('track-message');
        m.replaceChildren(a, ' to see this order.');
        m.className = 'message info';
        m.hidden = false;
        return;
      }
      return fail(problem(r, 'This order'));
    }
    cred = first.cred;
    order = first.r.body;
    const evs = await api('GET', '/v1/orders/' + orderId + '/events', undefined, cred.token);
    if (evs.ok) for (const ev of evs.body.data) addEvent(ev, false);
    // Read again: the order is now at least as new as the timeline.
    const again = await api('GET', '/v1/orders/' + orderId, undefined, cred.token);
    if (again.ok) order = again.body;
    renderOrder();
    const last = events.length ? events[events.length - 1].id : null;
    Ordo.follow({
      path: '/v1/events?order_id=' + encodeURIComponent(orderId),
      token: () => cred.token,
      since: last,
      onEvent: async (ev) => {
        if (!ev.data || ev.data.order_id !== orderId) return;
        if (addEvent(ev, true)) await refresh();
      },
      onAuthError: () => say($('track-message'), 'Live updates stopped: please sign in again.', 'error'),
    });
  }

  const cancel = $('cancel');
  cancel.addEventListener('click', async () => {
    if (cancel.dataset.confirm !== 'yes') {
      cancel.dataset.confirm = 'yes';
      cancel.textContent = 'Yes, cancel this order';
      return;
    }
    cancel.disabled = true;
    const r = await api('POST', '/v1/orders/' + orderId + '/cancel', { reason: 'canceled by the customer' }, cred.token);
    cancel.disabled = false;
    cancel.dataset.confirm = '';
    cancel.textContent = 'Cancel order';
    if (r.ok) {
      order = r.body;
      renderOrder();
      Ordo.toast('Your order was canceled.');
    } else {
      say($('track-message'), problem(r, 'This order'), 'error');
    }
  });

  start();
});
