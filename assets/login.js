// /login: sign in, create an account. On success the token is kept in localStorage and
// the browser goes back to where it came from (?next=, a path on this site only).
'use strict';

document.addEventListener('DOMContentLoaded', () => {
  const { api, problem, say, saveSession, safeNext, isStaff, $ } = Ordo;
  const params = new URLSearchParams(location.search);

  function done(answer) {
    saveSession(answer);
    const fallback = isStaff({ user: answer.user }) ? '/admin/orders' : '/';
    location.assign(safeNext(params.get('next'), fallback));
  }

  async function submit(form, button, message, path, body) {
    button.disabled = true;
    say(message, '');
    const r = await api('POST', path, body, null);
    button.disabled = false;
    if (r.ok) return done(r.body);
    let text = problem(r);
    if (r.status === 401) text = 'Wrong e-mail or password.';
    if (r.body && r.body.code === 'conflict') text = 'An account with this e-mail already exists. Sign in instead.';
    say(message, text, 'error');
  }

  const login = $('login-form');
  login.addEventListener('submit', (e) => {
    e.preventDefault();
    submit(login, login.querySelector('button'), $('login-message'), '/v1/auth/login', {
      email: $('login-email').value.trim(),
      password: $('login-password').value,
    });
  });

  const reg = $('register-form');
  reg.addEventListener('submit', (e) => {
    e.preventDefault();
    submit(reg, reg.querySelector('button'), $('register-message'), '/v1/auth/register', {
      name: $('register-name').value.trim(),
      email: $('register-email').value.trim(),
      password: $('register-password').value,
    });
  });

  if (Ordo.session()) {
    say($('login-message'), 'You are signed in as ' + Ordo.session().user.email + '. Signing in again replaces that session.', 'info');
  }
  $('login-email').focus();
});
