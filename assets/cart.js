// /cart: the signed-in customer's cart (GET /v1/users/me/cart): lines at today's prices,
// quantities, the total, and checkout with the chosen payment method. Errors the API gives
// (out of stock, a declined card) are said in words; a placed order opens its tracking page.
'use strict';

document.addEventListener('DOMContentLoaded', () => {
  const { api, problem, el, $, say, show, money, session, loginUrl, cartCount } = Ordo;
  if (!session()) {
    location.replace(loginUrl());
    return;
  }
  const message = $('cart-message');
  let cart = null;

  function render() {
    const lines = cart.items || [];
    show($('cart-empty'), lines.length === 0);
    show($('cart-lines'), lines.length > 0);
    show($('checkout-form'), lines.length > 0);
    cartCount(cart);
    $('cart-body').replaceChildren(...lines.map((l) => {
      const qty = el('input', {
        type: 'number', min: '0', max: '1000', value: l.quantity, id: 'qty-' + l.item_id,
        'data-testid': 'cart-quantity', 'data-item-id': l.item_id, inputmode: 'numeric',
      });
      qty.addEventListener('change', () => {
        // An emptied field is someone about to type; 0 (or Remove) removes the line.
        if (qty.value.trim() !== '') setQuantity(l.item_id, Number(qty.value));
      });
      const remove = el('button', { type: 'button', class: 'small secondary', 'data-testid': 'cart-remove', 'data-item-id': l.item_id, 'aria-label': 'Remove ' + l.name, text: 'Remove' });
      remove.addEventListener('click', () => removeLine(l.item_id));
      return el('tr', { 'data-testid': 'cart-line', 'data-item-id': l.item_id },
        el('td', {}, el('span', { class: 'line-name', 'data-testid': 'cart-item-name', text: l.name }),
          l.available === false ? el('div', { class: 'stock stock-out', 'data-testid': 'cart-unavailable', text: 'Not enough in stock for this quantity' }) : null),
        el('td', { class: 'num', text: money(l.unit_price, cart.currency) }),
        el('td', {}, el('label', { class: 'sr-only', for: 'qty-' + l.item_id, text: 'Quantity of ' + l.name }), qty),
        el('td', { class: 'num', text: money(l.line_total, cart.currency) }),
        el('td', {}, remove));
    }));
    $('cart-total').textContent = lines.length ? money(cart.total_amount, cart.currency) : '';
  }

  async function load() {
    const r = await api('GET', '/v1/users/me/cart');
    if (!r.ok) {
      say(message, problem(r, 'Your cart'), 'error');
      return;
    }
    cart = r.body;
    render();
  }

  async function setQuantity(itemId, quantity) {
    if (!Number.isInteger(quantity) || quantity < 0 || quantity > 1000) {
      say(message, 'A quantity is a whole number from 0 to 1000.', 'error');
      return;
    }
    const r = await api('PUT', '/v1/users/me/cart/' + encodeURIComponent(itemId), { quantity });
    if (r.ok) {
      say(message, '');
      cart = r.body;
      render();
    } else {
      say(message, problem(r, 'The item'), 'error');
      load();
    }
  }

  async function removeLine(itemId) {
    const r = await api('DELETE', '/v1/users/me/cart/' + encodeURIComponent(itemId));
    if (r.ok) {
      cart = r.body;
      render();
    } else {
      say(message, problem(r, 'The item'), 'error');
    }
  }

  $('checkout-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const button = $('checkout-form').querySelector('button');
    const body = { payment_method: $('payment-method').value };
    const address = $('shipping').value.trim();
    if (address) body.shipping_address = address;
    button.disabled = true;
    say(message, 'Placing your order…', 'info');
    const r = await api('POST', '/v1/users/me/cart/checkout', body);
    button.disabled = false;
    if (!r.ok) {
      // Show the cart as it is now first, then say why nothing was ordered.
      await load();
      say(message, problem(r), 'error');
      return;
    }
    const order = r.body;
    if (order.status === 'canceled' || order.payment_status === 'failed') {
      // The declined order took the cart with it: put the lines back, so that paying
      // with another card is one click.
      const before = cart.items || [];
      for (const l of before) await api('POST', '/v1/users/me/cart', { item_id: l.item_id, quantity: l.quantity });
      await load();
      say(message, 'Your payment was declined, so the order was not placed. Please try another card.', 'error');
      return;
    }
    // Placed, or still waiting for the bank: the tracking page follows it from here.
    location.assign('/orders/' + order.id);
  });

  load();
});
