"""The page's own style sheet and script, admitted by hash in its Content-Security-Policy."""

from __future__ import annotations

import base64
import hashlib

STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 14px; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: right; white-space: nowrap; }
tbody th { text-align: left; font-weight: normal; }
thead th:first-child { text-align: left; }
thead button { font: inherit; font-weight: bold; background: none; border: 0; cursor: pointer; padding: 0; }
th[aria-sort="ascending"] button::after { content: " \\25B2"; }
th[aria-sort="descending"] button::after { content: " \\25BC"; }
.scroll { overflow-x: auto; }
figure { display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }
figure.grid img { image-rendering: pixelated; max-width: none; }
figure.grid { display: block; }
.scroll-x { overflow-x: auto; }
.note { color: #555; }
dt { margin-top: 0.5em; }
"""

# Sorting reads the `data-value` of the cells, never record text embedded in the script.
SCRIPT = """
(function () {
  "use strict";
  var table = document.getElementById("leaderboard");
  if (!table) { return; }
  var body = table.tBodies[0];
  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  function sortBy(key, descending) {
    var index = headers.findIndex(function (th) { return th.getAttribute("data-key") === key; });
    if (index < 0) { return false; }
    var numeric = headers[index].getAttribute("data-type") === "number";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[index].getAttribute("data-value"), y = b.cells[index].getAttribute("data-value");
      if (x === "" || y === "") {
        if (x === y) { return Number(a.getAttribute("data-order")) - Number(b.getAttribute("data-order")); }
        return x === "" ? 1 : -1;
      }
      var c = numeric ? Number(x) - Number(y) : (x < y ? -1 : x > y ? 1 : 0);
      if (descending) { c = -c; }
      return c || Number(a.getAttribute("data-order")) - Number(b.getAttribute("data-order"));
    });
    rows.forEach(function (row) { body.appendChild(row); });
    headers.forEach(function (th) { th.setAttribute("aria-sort", "none"); });
    headers[index].setAttribute("aria-sort", descending ? "descending" : "ascending");
    table.setAttribute("data-sorted", (descending ? "-" : "") + key);
    return true;
  }
  function sortFromHash() {
    var match = /^#sort=(-?)(.+)$/.exec(window.location.hash);
    if (match) { sortBy(decodeURIComponent(match[2]), match[1] === "-"); }
  }
  headers.forEach(function (th) {
    th.querySelector("button").addEventListener("click", function () {
      var key = th.getAttribute("data-key");
      var descending = th.getAttribute("aria-sort") === "ascending";
      sortBy(key, descending);
      try {  // keep the view linkable; file:// pages may refuse history changes
        window.history.replaceState(null, "", "#sort=" + (descending ? "-" : "") + encodeURIComponent(key));
      } catch (error) { /* the table is sorted either way */ }
    });
  });
  window.addEventListener("hashchange", sortFromHash);
  sortFromHash();
})();
"""


def csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"
