// Ordo's pages: what every page shares. Hand-written, no framework, no build step.
// Everything shown is put into the page as text nodes (never parsed as markup), so names and
// notes with HTML in them show as text. The access token lives in localStorage and goes to
// the API as an Authorization header only; it never appears in a URL.
'use strict';

const Ordo = (() => {
  const SESSION = 'ordo.session';

  // ---- the session -------------------------------------------------------------------

  function session() {
    try {
      const s = JSON.parse(localStorage.getItem(SESSION) || 'null');
      if (s && s.token && s.expires_at > Date.now()) return s;
    } catch (_) { /* a damaged entry is no session */ }
    localStorage.removeItem(SESSION);
    return null;
  }

  function saveSession(answer) {
    localStorage.setItem(SESSION, JSON.stringify({
      token: answer.access_token,
      user: answer.user,
      // A little early, so a request never goes out with a token about to lapse.
      expires_at: Date.now() + (answer.expires_in - 30) * 1000,
    }));
  }

  function signOut() {
    localStorage.removeItem(SESSION);
  }

  const isStaff = (s) => !!s && !!s.user && (s.user.role === 'staff' || s.user.role === 'admin');

  // Where to go after signing in: a path on this site only.
  function safeNext(raw, fallback) {
    if (typeof raw === 'string' && raw.startsWith('/') && !raw.startsWith('//') && !raw.startsWith('/\\')) return raw;
    return fallback;
  }

  function loginUrl() {
    return '/login?next=' + encodeURIComponent(location.pathname + location.search);
  }

  // ---- the API -----------------------------------------------------------------------

  // Calls the API; resolves to {ok, status, body} (body: parsed JSON or null). A network
  // failure is status 0.
  async function api(method, path, body, token) {
    const headers = { 'accept': 'application/json' };
    const t = token === undefined ? (session() || {}).token : token;
    if (t) headers['authorization'] = 'Bearer ' + t;
    const init = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (_) {
      return { ok: false, status: 0, body: null };
    }
    let parsed = null;
    try { parsed = await res.json(); } catch (_) { parsed = null; }
    if (res.status === 401 && t && session() && t === session().token) {
      // The token ran out or was revoked: the session is over.
      signOut();
      renderSession();
    }
    return { ok: res.ok, status: res.status, body: parsed };
  }

  // A readable sentence for a failed API call.
  function problem(r, what) {
    if (r.status === 0) return 'The shop could not be reached. Check your connection and try again.';
    const p = r.body || {};
    switch (p.code) {
      case 'insufficient_stock':
        return 'Not enough stock: ' + (p.detail || 'an item is no longer available in that quantity') + '.';
      case 'payment_declined':
        return 'Your payment was declined. Please use another card.';
      case 'unauthorized':
        return 'Please sign in again.';
      case 'forbidden':
        return 'You are not allowed to do this.';
      case 'not_found':
        return (what || 'This') + ' was not found.';
      case 'invalid_transition':
      case 'conflict':
        return p.detail || 'This is no longer possible: the order changed meanwhile.';
      case 'rate_limited':
        return 'Too many attempts. Please wait a moment and try again.';
      case 'validation_failed': {
        const errs = (p.errors || []).map((e) => e.field + ' ' + e.message);
        return errs.length ? 'Please check: ' + errs.join('; ') + '.' : (p.detail || 'Please check your input.');
      }
      default:
        return p.detail || p.title || ('The request failed (' + r.status + ').');
    }
  }

  // ---- building the page -------------------------------------------------------------

  // el('li', {class: 'x', 'data-testid': 'y'}, 'text', child, …): text is always text.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const $ = (id) => document.getElementById(id);

  function show(node, on) {
    if (node) node.hidden = !on;
  }

  function say(node, text, kind) {
    if (!node) return;
    node.textContent = text || '';
    node.className = 'message' + (kind ? ' ' + kind : '');
    node.hidden = !text;
  }

  let toastTimer = null;
  function toast(text) {
    const t = $('toast');
    if (!t) return;
    t.textContent = text;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 3500);
  }

  function money(amount, currency) {
    try {
      return new Intl.NumberFormat(undefined, { style: 'currency', currency }).format(amount / 100);
    } catch (_) {
      return (amount / 100).toFixed(2) + ' ' + currency;
    }
  }

  function when(ts) {
    if (!ts) return '—';
    const d = new Date(ts);
    return isNaN(d) ? ts : d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  }

  function day(date) {
    if (!date) return '—';
    const d = new Date(date + 'T12:00:00');
    return isNaN(d) ? date : d.toLocaleDateString(undefined, { weekday: 'short', day: 'numeric', month: 'short', year: 'numeric' });
  }

  const STATUS = {
    created: 'Awaiting payment',
    placed: 'Placed',
    processing: 'Processing',
    shipped: 'Shipped',
    delivered: 'Delivered',
    canceled: 'Canceled',
  };
  const CARRIER_STATUS = {
    info_received: 'Information received',
    in_transit: 'In transit',
    out_for_delivery: 'Out for delivery',
    attempt_failed: 'Delivery attempt failed',
    available_for_pickup: 'Available for pickup',
    exception: 'Delivery exception',
  };
  const statusLabel = (s) => STATUS[s] || s;
  const carrierLabel = (s) => CARRIER_STATUS[s] || s;
  const shortId = (id) => String(id || '').slice(-8);

  // One timeline entry (an event as the API shows it).
  function timelineEntry(ev) {
    const d = ev.data || {};
    const scan = ev.event === 'order_tracking_update';
    const title = scan ? (d.description || carrierLabel(d.carrier_status) || 'Carrier update')
      : (d.previous_status ? statusLabel(d.status) : 'Order received');
    const flags = [];
    if (scan && d.carrier_status) {
      const bad = d.carrier_status === 'exception' || d.carrier_status === 'attempt_failed';
      flags.push(el('span', { class: 'tag' + (bad ? ' bad' : ''), 'data-testid': 'carrier-status', text: carrierLabel(d.carrier_status) }));
    }
    const meta = [];
    if (d.location) meta.push(el('span', { class: 'where', 'data-testid': 'timeline-location', text: d.location }));
    if (d.carrier || d.tracking_number) meta.push(el('span', { text: [d.carrier, d.tracking_number].filter(Boolean).join(' ') }));
    if (d.estimated_delivery) meta.push(el('span', { text: 'Estimated delivery ' + day(d.estimated_delivery) }));
    return el('li', { class: 'entry' + (scan ? ' scan' : ' change st-' + d.status), 'data-testid': 'timeline-entry', 'data-event-id': ev.id },
      el('time', { datetime: d.at, text: when(d.at) }),
      el('div', { class: 'entry-body' },
        el('strong', { class: 'entry-title', text: title }), ' ', flags,
        meta.length ? el('div', { class: 'entry-meta' }, meta) : null,
        d.note ? el('p', { class: 'note', 'data-testid': 'timeline-note', text: d.note }) : null));
  }

  // ---- the header --------------------------------------------------------------------

  function renderSession() {
    const s = session();
    const who = $('who');
    if (who) {
      who.textContent = s && s.user ? s.user.name : '';
      who.hidden = !s;
    }
    show($('sign-in'), !s);
    show($('sign-out'), !!s);
    for (const a of document.querySelectorAll('[data-auth]')) {
      const want = a.getAttribute('data-auth');
      a.hidden = !(s && (want === 'customer' ? !isStaff(s) : isStaff(s)));
    }
    const signIn = $('sign-in');
    if (signIn && location.pathname !== '/login') signIn.href = loginUrl();
  }

  // ---- the live stream ---------------------------------------------------------------

  // Follows /v1/events (Server-Sent Events) with fetch streaming, so the token goes in the
  // Authorization header and never in a URL. Reconnects with backoff and resumes after the
  // last event id it saw (Last-Event-ID), so a dropped connection loses nothing. The
  // header's live indicator shows the state.
  class Live {
    constructor(opts) {
      this.path = opts.path; // e.g. '/v1/events?order_id=…'
      this.token = opts.token; // () => token
      this.onEvent = opts.onEvent;
      this.onOpen = opts.onOpen || (() => {});
      this.onAuthError = opts.onAuthError || (() => {});
      this.lastId = opts.since || null;
      this.delay = 500;
      this.stopped = false;
      this.controller = null;
      this.watchdog = null;
      this.retryTimer = null;
      window.addEventListener('online', () => this.reconnectSoon(0));
      document.addEventListener('visibilitychange', () => {
        if (!document.hidden && this.state !== 'live') this.reconnectSoon(0);
      });
      this.connect();
    }

    setState(state) {
      this.state = state;
      const ind = $('live');
      if (!ind) return;
      ind.hidden = false;
      ind.dataset.state = state;
      const text = ind.querySelector('.live-text');
      if (text) text.textContent = state === 'live' ? 'Live' : state === 'connecting' ? 'Reconnecting…' : 'Offline';
      ind.title = state === 'live' ? 'Updates appear as they happen' : 'Not receiving updates right now; reconnecting';
    }

    // No byte (not even the server's keep-alive) for this long: the connection is dead.
    kick() {
      clearTimeout(this.watchdog);
      this.watchdog = setTimeout(() => this.drop(), 45000);
    }

    drop() {
      if (this.controller) this.controller.abort();
    }

    reconnectSoon(ms) {
      if (this.stopped) return;
      clearTimeout(this.retryTimer);
      if (this.controller) return; // a connection is being made or is open
      this.retryTimer = setTimeout(() => this.connect(), ms);
    }

    stop() {
      this.stopped = true;
      clearTimeout(this.watchdog);
      clearTimeout(this.retryTimer);
      this.drop();
      const ind = $('live');
      if (ind) ind.hidden = true;
    }

    async connect() {
      if (this.stopped || this.controller) return;
      this.setState('connecting');
      const controller = new AbortController();
      this.controller = controller;
      const headers = { 'accept': 'text/event-stream' };
      const t = this.token();
      if (t) headers['authorization'] = 'Bearer ' + t;
      if (this.lastId) headers['last-event-id'] = this.lastId;
      let ended = 'error';
      try {
        const res = await fetch(this.path, { headers, signal: controller.signal, cache: 'no-store' });
        if (res.status === 401 || res.status === 403 || res.status === 404) {
          ended = 'auth';
          this.onAuthError(res.status);
        } else if (res.ok && res.body) {
          this.everOpen = true;
          this.delay = 500;
          this.setState('live');
          this.kick();
          await this.onOpen(this.lastId);
          await this.read(res.body.getReader());
        }
      } catch (_) { /* dropped: reconnect below */ }
      clearTimeout(this.watchdog);
      if (this.controller === controller) this.controller = null;
      if (this.stopped) return;
      if (ended === 'auth') {
        this.setState('offline');
        return;
      }
      this.setState('connecting');
      const wait = this.delay;
      this.delay = Math.min(this.delay * 2, 15000);
      this.retryTimer = setTimeout(() => this.connect(), wait * (0.8 + Math.random() * 0.4));
    }

    async read(reader) {
      const decoder = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        this.kick();
        buf += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut).replace(/^\r?\n\r?\n/, '');
          const ev = { id: null, event: 'message', data: '' };
          for (const line of block.split(/\r?\n/)) {
            if (!line || line.startsWith(':')) continue;
            const i = line.indexOf(':');
            const field = i < 0 ? line : line.slice(0, i);
            const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
            if (field === 'id') ev.id = val;
            else if (field === 'event') ev.event = val;
            else if (field === 'data') ev.data += (ev.data ? '\n' : '') + val;
          }
          if (ev.event === 'error' || ev.event === 'shutdown') {
            // The server asks us to come back (too slow, or it is stopping).
            this.drop();
            return;
          }
          if (!ev.data) continue;
          let msg;
          try { msg = JSON.parse(ev.data); } catch (_) { continue; }
          if (ev.id) this.lastId = ev.id;
          try { await this.onEvent(msg); } catch (e) { console.error(e); }
        }
      }
    }
  }

  function follow(opts) {
    const live = new Live(opts);
    window.OrdoLive = live; // for a person (or a test) at the console: OrdoLive.drop()
    return live;
  }

  // The number of units in the cart, in the header.
  function cartCount(cart) {
    const c = $('cart-count');
    if (!c) return;
    const n = cart && Array.isArray(cart.items) ? cart.items.reduce((sum, l) => sum + l.quantity, 0) : 0;
    c.textContent = String(n);
    c.hidden = n === 0;
  }

  async function loadCartCount() {
    const s = session();
    if (!s || isStaff(s)) return;
    const r = await api('GET', '/v1/users/me/cart');
    if (r.ok) cartCount(r.body);
  }

  // ---- start -------------------------------------------------------------------------

  document.addEventListener('DOMContentLoaded', () => {
    renderSession();
    loadCartCount();
    const out = $('sign-out');
    if (out) out.addEventListener('click', () => {
      signOut();
      location.assign('/login');
    });
    window.addEventListener('storage', (e) => { if (e.key === SESSION) renderSession(); });
  });

  return {
    session, saveSession, signOut, isStaff, safeNext, loginUrl, api, problem, el, $, show, say,
    toast, money, when, day, statusLabel, carrierLabel, shortId, timelineEntry, renderSession,
    follow, cartCount, STATUS,
  };
})();
