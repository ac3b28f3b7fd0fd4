// Signs a wall screen in: the token (from the URL fragment or the form) is
// sent once as a bearer header to /wall/session, which answers with an
// HttpOnly cookie; then the wall is loaded again without the fragment.
"use strict";
(function () {
  function signIn(token) {
    return fetch("/wall/session", {
      method: "POST",
      headers: { "Authorization": "Bearer " + token },
      credentials: "same-origin",
    }).then(function (r) {
      if (r.ok) {
        location.replace(location.pathname + location.search);
      } else {
        var e = document.getElementById("signin-error");
        e.textContent = "That token was refused (" + r.status + ").";
        e.hidden = false;
      }
    });
  }
  var m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    var token = decodeURIComponent(m[1]);
    history.replaceState(null, "", location.pathname + location.search);
    signIn(token);
  }
  document.getElementById("signin").addEventListener("submit", function (ev) {
    ev.preventDefault();
    signIn(document.getElementById("token").value.trim());
  });
})();
