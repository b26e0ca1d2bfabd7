// On every page: tell the server the viewer's time zone, and ask before a destructive form.
//
// The zone (an IANA name such as "Europe/Berlin") goes in the sarco_tz cookie, which the
// server reads to count days and show times in it. When the page was rendered in another
// zone (the first visit, or a laptop that travelled), it is loaded once more, at most once
// per zone and tab: where cookies are blocked the page stays in UTC instead of looping.
"use strict";
(function () {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  const rendered = document.documentElement.dataset.zone;
  const explicit = new URLSearchParams(window.location.search).has("tz");
  if (/^[A-Za-z0-9_+\-\/]+$/.test(zone) && zone !== rendered && !explicit) {
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
})();
