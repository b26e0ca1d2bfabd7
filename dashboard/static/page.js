// On every page: tell the server the viewer's time zone, ask before a destructive form, and
// say so above a table that is wider than the screen (it scrolls sideways in its box).
//
// The zone (an IANA name such as "Europe/Berlin") goes in the sarco_tz cookie, which the
// server reads to count days and show times in it. When the page was rendered in another
// zone (the first visit, or a laptop that travelled), or without the cookie (a browser in
// UTC: same figures, but the page said no zone was reported), it is loaded once more, at
// most once per zone and tab: where cookies are blocked the page stays in UTC instead of
// looping.
"use strict";
(function () {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  const rendered = document.documentElement.dataset.zone;
  const unreported = document.documentElement.dataset.zoneSource === "default";
  const explicit = new URLSearchParams(window.location.search).has("tz");
  if (/^[A-Za-z0-9_+\-\/]+$/.test(zone) && (zone !== rendered || unreported) && !explicit) {
    document.cookie = "sarco_tz=" + zone + "; path=/; max-age=31536000; SameSite=Strict";
    const loggedIn = document.querySelector("header.top");
    if (loggedIn && window.sessionStorage.getItem("sarco_tz_reloaded") !== zone) {
      window.sessionStorage.setItem("sarco_tz_reloaded", zone);
      window.location.reload();
    }
  }
  document.addEventListener("submit", function (event) {
    const question = event.target.dataset && event.target.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });

  // a .scroll box whose table does not fit gets the class "scrolls" (a shadow on the side
  // that hides columns) and a line above it saying so; again on resize, when a <details>
  // opens, and after the fleet page swaps in fresh figures (dashboard.js)
  function markScrolling() {
    document.querySelectorAll(".scroll").forEach(function (box) {
      const wide = box.clientWidth > 0 && box.scrollWidth > box.clientWidth + 1;
      box.classList.toggle("scrolls", wide);
      const before = box.previousElementSibling;
      const hinted = before && before.classList.contains("scroll-hint");
      if (wide && !hinted) {
        const hint = document.createElement("p");
        hint.className = "scroll-hint";
        hint.textContent = "⇆ Wider than the screen: scroll the table sideways.";
        box.before(hint);
      } else if (!wide && hinted) {
        before.remove();
      }
    });
  }
  window.sarcoMarkScrolling = markScrolling;
  markScrolling();
  window.addEventListener("resize", markScrolling);
  document.addEventListener("toggle", markScrolling, true);
})();
