// /: the shop front. The catalogue, the search (Enter submits it) and the category filter
// are plain server-rendered forms; this script adds items to the cart through the API.
'use strict';

document.addEventListener('DOMContentLoaded', () => {
  const { api, problem, session, loginUrl, toast, $ } = Ordo;
  const category = $('category');
  if (category) category.addEventListener('change', () => category.form.requestSubmit());

  for (const button of document.querySelectorAll('[data-testid="add-to-cart"]')) {
    button.addEventListener('click', async () => {
      if (!session()) {
        location.assign(loginUrl());
        return;
      }
      const card = button.closest('[data-testid="item"]');
      const name = card ? card.querySelector('[data-testid="item-name"]').textContent : 'The item';
      button.disabled = true;
      const r = await api('POST', '/v1/users/me/cart', { item_id: button.dataset.itemId, quantity: 1 });
      button.disabled = false;
      if (r.ok) {
        toast(name + ' is in your cart.');
        Ordo.cartCount(r.body);
      } else {
        toast(problem(r, 'The item'));
      }
    });
  }
});
