// /admin/orders/{id}: one order in the staff console. Change its status (with carrier and
// tracking number), add a carrier scan, and watch its timeline: it follows the order over
// /v1/events, so a change made anywhere else (another member of staff, an integration, a
// carrier's webhook) shows at once.
'use strict';

document.addEventListener('DOMContentLoaded', () => {
  const { api, problem, el, $, say, show, money, when, day, statusLabel, shortId, session, loginUrl, timelineEntry } = Ordo;
  const orderId = document.body.dataset.orderId;
  const NEXT = {
    created: ['canceled'],
    placed: ['processing', 'shipped', 'canceled'],
    processing: ['shipped', 'canceled'],
    shipped: ['delivered'],
    delivered: [],
    canceled: [],
  };
  let order = null;
  let latestEstimate = null; // from the latest carrier scan that gave one
  const seen = new Set();

  if (!session()) {
    location.replace(loginUrl());
    return;
  }

  function address(a) {
    if (!a) return '—';
    if (typeof a === 'string') return a;
    return Object.values(a).filter((v) => typeof v === 'string' && v).join(', ') || JSON.stringify(a);
  }

  function render() {
    $('console-order').removeAttribute('aria-busy');
    show($('order-body'), true);
    document.title = 'Order #' + shortId(order.id) + ' · ' + statusLabel(order.status) + ' · Console';
    $('order-ref').textContent = order.id;
    $('order-customer').textContent = order.customer_id;
    const st = $('order-status');
    st.textContent = statusLabel(order.status);
    st.dataset.status = order.status;
    st.className = 'badge big s-' + order.status;
    $('payment-status').textContent = 'payment ' + order.payment_status;
    $('carrier').textContent = order.carrier || '—';
    $('tracking-number').textContent = order.tracking_number || '—';
    const eta = order.estimated_delivery || latestEstimate;
    $('estimated-delivery').textContent = eta ? day(eta) : '—';
    $('order-total').textContent = money(order.total_amount, order.currency);
    $('shipping-address').textContent = address(order.shipping_address);
    $('order-lines').replaceChildren(...order.items.map((l) => el('tr', {},
      el('td', {}, el('span', { class: 'line-name', text: l.name }), el('span', { class: 'hint', text: ' × ' + l.quantity + ' · ' + l.sku })),
      el('td', { class: 'num', text: money(l.line_total, order.currency) }))));
    const select = $('status-select');
    const keep = select.value;
    const next = NEXT[order.status] || [];
    select.replaceChildren(...next.map((s) => el('option', { value: s, text: statusLabel(s) })));
    if (next.includes(keep)) select.value = keep;
    const form = $('status-form');
    for (const f of form.elements) f.disabled = next.length === 0;
    if (next.length === 0) say($('status-message'), 'This order has ended; its status can no longer change.', 'info');
    const carrier = $('carrier-input');
    if (!carrier.value && order.carrier) carrier.value = order.carrier;
    const tracking = $('tracking-input');
    if (!tracking.value && order.tracking_number) tracking.value = order.tracking_number;
  }

  function addEvent(ev, live) {
    if (seen.has(ev.id)) return false;
    seen.add(ev.id);
    if (ev.data && ev.data.estimated_delivery) latestEstimate = ev.data.estimated_delivery;
    const entry = timelineEntry(ev);
    if (live) entry.classList.add('fresh');
    $('timeline').prepend(entry);
    return true;
  }

  async function reread() {
    const r = await api('GET', '/v1/orders/' + orderId);
    if (r.ok) {
      order = r.body;
      render();
    }
    return r;
  }

  $('status-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const button = $('status-form').querySelector('button');
    const body = { status: $('status-select').value, expected_status: order.status };
    const carrier = $('carrier-input').value.trim();
    const tracking = $('tracking-input').value.trim();
    const note = $('status-note').value.trim();
    if (carrier) body.carrier = carrier;
    if (tracking) body.tracking_number = tracking;
    if (note) body.note = note;
    button.disabled = true;
    const r = await api('POST', '/v1/orders/' + orderId + '/status', body);
    button.disabled = false;
    if (r.ok) {
      order = r.body;
      $('status-note').value = '';
      render();
      say($('status-message'), 'Status changed to ' + statusLabel(order.status) + '.', 'ok');
    } else {
      // The order moved meanwhile: show it as it is now, and say why nothing changed.
      if (r.body && (r.body.code === 'conflict' || r.body.code === 'invalid_transition')) await reread();
      say($('status-message'), problem(r, 'This order'), 'error');
    }
  });

  $('scan-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const button = $('scan-form').querySelector('button');
    const body = { description: $('scan-description').value.trim() };
    const location_ = $('scan-location').value.trim();
    const cs = $('scan-status').value;
    const eta = $('scan-eta').value;
    if (location_) body.location = location_;
    if (cs) body.carrier_status = cs;
    if (eta) body.estimated_delivery = eta;
    button.disabled = true;
    const r = await api('POST', '/v1/orders/' + orderId + '/tracking', body);
    button.disabled = false;
    if (r.ok) {
      $('scan-form').reset();
      say($('scan-message'), 'Scan added.', 'ok');
      reread();
    } else {
      say($('scan-message'), problem(r, 'This order'), 'error');
    }
  });

  async function start() {
    const me = await api('GET', '/v1/me');
    if (!me.ok || !me.body || (me.body.role !== 'staff' && me.body.role !== 'admin')) {
      $('console-order').removeAttribute('aria-busy');
      say($('order-message'), me.status === 401 ? 'Please sign in again.' : 'This console is for shop staff only.', 'error');
      $('order-message').dataset.testid = 'forbidden';
      return;
    }
    const evs = await api('GET', '/v1/orders/' + orderId + '/events');
    if (!evs.ok) {
      $('console-order').removeAttribute('aria-busy');
      say($('order-message'), problem(evs, 'This order'), 'error');
      return;
    }
    for (const ev of evs.body.data) addEvent(ev, false);
    const r = await reread();
    if (!r.ok) {
      say($('order-message'), problem(r, 'This order'), 'error');
      return;
    }
    const last = evs.body.data.length ? evs.body.data[evs.body.data.length - 1].id : null;
    Ordo.follow({
      path: '/v1/events?order_id=' + encodeURIComponent(orderId),
      token: () => (session() || {}).token,
      since: last,
      onEvent: async (ev) => {
        if (!ev.data || ev.data.order_id !== orderId) return;
        if (addEvent(ev, true)) await reread();
      },
      onAuthError: () => say($('order-message'), 'Live updates stopped: please sign in again.', 'error'),
    });
  }

  start();
});
