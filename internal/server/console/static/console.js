// The console's one script: it refreshes the live parts of a page
// ([data-live] elements with an id) from the same URL every few seconds
// while the page is live and not final, keeping the keyboard focus where
// it was. Without it every page still works; it only stops updating.
(function () {
  'use strict';
  var body = document.body;
  if (!body.hasAttribute('data-live-page') || body.hasAttribute('data-final')) return;
  var every = 2000;
  var busy = false;

  function focusKey(el) {
    if (!el || el === document.body) return null;
    if (el.id) return { id: el.id };
    if (el.getAttribute && el.getAttribute('href')) return { href: el.getAttribute('href') };
    return null;
  }

  function restore(key) {
    if (!key) return;
    var el = key.id ? document.getElementById(key.id)
      : document.querySelector('[data-live] [href="' + CSS.escape(key.href) + '"]');
    if (el) el.focus();
  }

  function typing() {
    var el = document.activeElement;
    return el && (el.tagName === 'INPUT' || el.tagName === 'TEXTAREA' || el.tagName === 'SELECT') && el.value !== '';
  }

  function refresh() {
    if (busy || document.hidden || typing()) return schedule();
    busy = true;
    fetch(location.href, { credentials: 'same-origin', headers: { 'Accept': 'text/html' } })
      .then(function (r) {
        if (r.redirected || !r.ok) { location.reload(); throw new Error('reload'); }
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, 'text/html');
        var key = focusKey(document.activeElement);
        document.querySelectorAll('[data-live][id]').forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          if (fresh && fresh.innerHTML !== el.innerHTML) el.innerHTML = fresh.innerHTML;
        });
        restore(key);
        if (doc.body.hasAttribute('data-final')) body.setAttribute('data-final', '');
      })
      .catch(function () {})
      .then(function () { busy = false; schedule(); });
  }

  function schedule() {
    if (!body.hasAttribute('data-final')) setTimeout(refresh, every);
  }
  schedule();
})();
