// Live view: re-fetch this page every 10 s and swap the #live block, so the numbers move
// without a full reload (the filter form keeps what is being typed). Paused while the tab
// is hidden; a logged-out session (redirect to /login) reloads the page.
"use strict";
(function () {
  const REFRESH_MS = 10000;
  async function refresh() {
    if (document.hidden) return;
    try {
      const response = await fetch(window.location.href, { credentials: "same-origin" });
      if (response.redirected && new URL(response.url).pathname === "/login") {
        window.location.reload();
        return;
      }
      if (!response.ok) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.getElementById("live");
      const live = document.getElementById("live");
      if (fresh && live) live.replaceWith(fresh);
      if (window.sarcoMarkScrolling) window.sarcoMarkScrolling();
    } catch (error) {
      // the server is restarting or the network is down: try again next time
    }
  }
  window.setInterval(refresh, REFRESH_MS);
})();
