// The import page's progress, polled from /imports/jobs/ID/progress; when the
// import is over the page reloads to show the verification report.  Without
// script the page refreshes itself instead (a <noscript> meta refresh).
(function () {
  "use strict";
  var section = document.getElementById("job");
  if (!section) { return; }
  var id = section.getAttribute("data-job");
  var phase = document.getElementById("job-phase");
  var bar = document.getElementById("job-bar");
  var files = document.getElementById("job-files");
  var polls = 0;
  function poll() {
    polls += 1;
    if (polls > 3600) { return; }  // an hour at most; reloading the page starts again
    fetch("/imports/jobs/" + encodeURIComponent(id) + "/progress", {credentials: "same-origin",
                                                                     headers: {"Accept": "application/json"}})
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then(function (job) {
        if (job.state === "finished" || job.state === "failed") { window.location.reload(); return; }
        phase.textContent = (job.state === "uploaded" ? "Waiting for the import to start" : (job.phase || "starting")) + "...";
        if (job.total) { bar.max = job.total; bar.value = job.done; } else { bar.removeAttribute("value"); }
        files.textContent = job.files + " files so far.";
        window.setTimeout(poll, 1000);
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  window.setTimeout(poll, 500);
}());
