// The dashboard's only script: refresh the live fragment every second, and the replay/cancel buttons.
// No framework, no build step; the server escapes every value it renders into the fragment.
(function () {
  "use strict";
  var HEADERS = { "x-ast-dashboard": "1" };

  function say(text) {
    var flash = document.getElementById("flash");
    if (flash) { flash.textContent = text; }
  }

  function refresh(live, status, every) {
    fetch("/dashboard/live", { headers: HEADERS, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.redirected || response.status === 401) {
          window.location.assign("/dashboard/login");
          return null;
        }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        if (html !== null) {
          live.innerHTML = html;
          status.textContent = "live, every " + every / 1000 + " s";
          status.className = "ok";
        }
      })
      .catch(function (error) {
        status.textContent = "not refreshing: " + error.message;
        status.className = "bad";
      })
      .finally(function () { window.setTimeout(refresh, every, live, status, every); });
  }

  function post(path, body) {
    var headers = Object.assign({ "content-type": "application/json" }, HEADERS);
    return fetch(path, { method: "POST", headers: headers, credentials: "same-origin", body: body })
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (json) {
          return { ok: response.ok, status: response.status, json: json };
        });
      });
  }

  function act(button) {
    var action = button.getAttribute("data-action");
    var task = button.getAttribute("data-task");
    button.disabled = true;
    var done;
    if (action === "replay-all") {
      done = post("/dlq/replay", "{}");
    } else if (action === "replay") {
      done = post("/dlq/replay", JSON.stringify({ taskIds: [task] }));
    } else if (action === "cancel") {
      done = post("/tasks/" + encodeURIComponent(task) + "/cancel", "");
    } else {
      return;
    }
    done.then(function (answer) {
      if (answer.ok && action === "cancel") {
        say("cancelled " + task);
      } else if (answer.ok) {
        say("replayed " + answer.json.replayed + (answer.json.skipped ? ", kept " + answer.json.skipped : ""));
      } else {
        var error = answer.json.error || {};
        say(action + " refused: " + answer.status + " " + (error.code || "") + " " + (error.message || ""));
      }
      if (button.getAttribute("data-reload")) { window.location.reload(); }
    }).catch(function (error) {
      say(action + " failed: " + error.message);
    }).finally(function () { button.disabled = false; });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-action]");
    if (button) { act(button); }
  });

  document.addEventListener("DOMContentLoaded", function () {
    var live = document.getElementById("live");
    var status = document.getElementById("live-status");
    if (live && status) {
      var every = parseInt(live.getAttribute("data-refresh-ms"), 10) || 1000;
      window.setTimeout(refresh, every, live, status, every);
      status.textContent = "live, every " + every / 1000 + " s";
    }
  });
}());
