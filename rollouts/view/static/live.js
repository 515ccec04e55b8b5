// Live update: an element with id "live" and data-src is refreshed from that URL every 2 s for as
// long as the server answers with the header X-Rollouts-Live: 1 (a rollout or run still running).
// The fragment is HTML rendered (and escaped) by this server. Open <details> stay open.
(function () {
  var el = document.getElementById("live");
  if (!el || !el.dataset.src || el.dataset.live !== "1") return;
  function tick() {
    fetch(el.dataset.src, { cache: "no-store" }).then(function (r) {
      if (!r.ok) { setTimeout(tick, 5000); return; }
      var more = r.headers.get("X-Rollouts-Live") === "1";
      return r.text().then(function (html) {
        var open = Array.prototype.map.call(el.querySelectorAll("details[open][id]"), function (d) { return d.id; });
        el.innerHTML = html;
        open.forEach(function (id) { var d = document.getElementById(id); if (d) d.open = true; });
        if (more) setTimeout(tick, 2000);
      });
    }).catch(function () { setTimeout(tick, 5000); });
  }
  setTimeout(tick, 2000);
})();
