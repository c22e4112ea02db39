"""The pages' own style sheet and script, admitted by hash in their Content-Security-Policy."""

from __future__ import annotations

import base64
import hashlib

STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.4; }
nav { margin-bottom: 1em; font-size: 14px; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; font-size: 14px; }
caption { text-align: left; font-weight: bold; padding: 4px 0; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: right; vertical-align: top; }
td { white-space: nowrap; }
tbody th { text-align: left; font-weight: normal; max-width: 18em; overflow-wrap: anywhere; }
thead th { vertical-align: bottom; max-width: 9em; }
thead th:first-child { text-align: left; }
thead button { font: inherit; font-weight: bold; background: none; border: 0; cursor: pointer; padding: 0; text-align: inherit; }
th[aria-sort="ascending"] button::after { content: " \\25B2"; }
th[aria-sort="descending"] button::after { content: " \\25BC"; }
td .ci { display: block; color: #555; font-size: 12px; }
.rank { font-weight: bold; color: #1f4e79; }
.pareto { color: #1f4e79; }
.scroll { overflow-x: auto; }
figure { display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }
figure.grid img { image-rendering: pixelated; max-width: none; }
figure.grid { display: block; }
img.plot { max-width: 100%; height: auto; }
.scroll-x { overflow-x: auto; }
.note { color: #555; }
dt { margin-top: 0.5em; }
dl.definitions { font-size: 14px; }
section.group { margin-top: 2em; }
table.index td, table.index th { text-align: left; white-space: normal; }
"""

# Sorting reads the `data-value` of the cells, never record text embedded in the script. Every
# table of class "sortable" sorts on a header click; the address's ``#sort=`` sorts the headline
# table (id "leaderboard").
SCRIPT = """
(function () {
  "use strict";
  function sortable(table) {
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
    headers.forEach(function (th) {
      th.querySelector("button").addEventListener("click", function () {
        var key = th.getAttribute("data-key");
        var descending = th.getAttribute("aria-sort") === "ascending";
        sortBy(key, descending);
        if (table.id !== "leaderboard") { return; }
        try {  // keep the view linkable; file:// pages may refuse history changes
          window.history.replaceState(null, "", "#sort=" + (descending ? "-" : "") + encodeURIComponent(key));
        } catch (error) { /* the table is sorted either way */ }
      });
    });
    return sortBy;
  }
  var headline = null;
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var sortBy = sortable(table);
    if (table.id === "leaderboard") { headline = sortBy; }
  });
  function sortFromHash() {
    var match = /^#sort=(-?)(.+)$/.exec(window.location.hash);
    if (match && headline) { headline(decodeURIComponent(match[2]), match[1] === "-"); }
  }
  window.addEventListener("hashchange", sortFromHash);
  sortFromHash();
})();
"""


def csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def content_policy(*, images: str = "data:") -> str:
    """The pages' Content-Security-Policy: only their own script and style (by hash), images from `images`."""
    return (
        f"default-src 'none'; script-src {csp_hash(SCRIPT)}; style-src {csp_hash(STYLE)}; "
        f"img-src {images}; base-uri 'none'; form-action 'none'"
    )
